package metrics

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// procStatLine is what parseStat takes from /proc/PID/stat.
type procStatLine struct {
	comm       string
	state      byte
	ppid       int
	utime      uint64
	stime      uint64
	cutime     uint64 // children waited for
	cstime     uint64
	threads    int
	startTicks uint64
}

// parseStat parses /proc/PID/stat. The command name is in parentheses and
// may itself contain spaces and parentheses, so fields are counted from the
// last ')'.
func parseStat(b []byte) (procStatLine, error) {
	var s procStatLine
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return s, errors.New("stat: no command name")
	}
	s.comm = string(b[open+1 : end])
	f := strings.Fields(string(b[end+1:]))
	// f[0] is field 3 (state); field n is f[n-3].
	if len(f) < 20 {
		return s, fmt.Errorf("stat: %d fields after the command name, want at least 20", len(f))
	}
	if len(f[0]) != 1 {
		return s, fmt.Errorf("stat: bad state %q", f[0])
	}
	s.state = f[0][0]
	var err error
	u := func(field int) uint64 {
		if err != nil {
			return 0
		}
		var v uint64
		v, err = strconv.ParseUint(f[field-3], 10, 64)
		if err != nil {
			err = fmt.Errorf("stat: field %d: %w", field, err)
		}
		return v
	}
	s.ppid = int(u(4))
	s.utime = u(14)
	s.stime = u(15)
	s.cutime = u(16)
	s.cstime = u(17)
	s.threads = int(u(20))
	s.startTicks = u(22)
	return s, err
}

// parseStatus returns the context switch counts of a /proc/PID/status (or
// task status) file.
func parseStatus(b []byte) (voluntary, nonvoluntary int64, err error) {
	seen, err := parseKeyed(b, map[string]*int64{
		"voluntary_ctxt_switches": &voluntary, "nonvoluntary_ctxt_switches": &nonvoluntary,
	}, func(v string) (int64, error) { return strconv.ParseInt(strings.TrimSpace(v), 10, 64) })
	if err != nil {
		return 0, 0, fmt.Errorf("status: %w", err)
	}
	if seen != 2 {
		return 0, 0, errors.New("status: no context switch counts")
	}
	return voluntary, nonvoluntary, nil
}

// parseKeyed reads the "Key: value" lines of a /proc file and, for each key
// of want, stores its value parsed by parse. It returns how many of them it
// found.
func parseKeyed(b []byte, want map[string]*int64, parse func(string) (int64, error)) (int, error) {
	seen := 0
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		dst, ok := want[k]
		if !ok {
			continue
		}
		n, err := parse(v)
		if err != nil {
			return seen, fmt.Errorf("%s: %w", k, err)
		}
		*dst = n
		seen++
	}
	return seen, nil
}

// parseSchedstat returns the first field of a schedstat file: nanoseconds
// spent on a CPU.
func parseSchedstat(b []byte) (int64, error) {
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 0, errors.New("schedstat: empty")
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("schedstat: %w", err)
	}
	return n, nil
}

// parseSmapsRollup returns Rss, Pss and Private_Clean + Private_Dirty (the
// unique set size) of /proc/PID/smaps_rollup in bytes.
// A process without an address space (a kernel thread) has neither and
// reads as zero.
func parseSmapsRollup(b []byte) (rss, pss, uss int64, err error) {
	var clean, dirty int64
	if _, err := parseKeyed(b, map[string]*int64{"Rss": &rss, "Pss": &pss, "Private_Clean": &clean, "Private_Dirty": &dirty}, parseKB); err != nil {
		return 0, 0, 0, fmt.Errorf("smaps_rollup: %w", err)
	}
	return rss, pss, clean + dirty, nil
}

// parseKB parses "   1234 kB" into bytes.
func parseKB(s string) (int64, error) {
	f := strings.Fields(s)
	if len(f) != 2 || f[1] != "kB" {
		return 0, fmt.Errorf("bad size %q", strings.TrimSpace(s))
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0, err
	}
	return n * 1024, nil
}

// parseSNMP returns the Tcp counters of a /proc/net/snmp file, whose
// sections are pairs of lines: "Tcp: Name1 Name2 ..." then "Tcp: v1 v2 ...".
func parseSNMP(b []byte) (TCP, error) {
	var t TCP
	sc := bufio.NewScanner(bytes.NewReader(b))
	var names []string
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Tcp:")
		if !ok {
			continue
		}
		if names == nil {
			names = strings.Fields(rest)
			continue
		}
		vals := strings.Fields(rest)
		if len(vals) != len(names) {
			return t, fmt.Errorf("snmp: %d Tcp names but %d values", len(names), len(vals))
		}
		fields := map[string]*int64{
			"InSegs":       &t.InSegs,
			"OutSegs":      &t.OutSegs,
			"RetransSegs":  &t.RetransSegs,
			"ActiveOpens":  &t.ActiveOpens,
			"PassiveOpens": &t.PassiveOpens,
			"AttemptFails": &t.AttemptFails,
			"EstabResets":  &t.EstabResets,
			"InErrs":       &t.InErrs,
			"OutRsts":      &t.OutRsts,
		}
		if !slices.Contains(names, "InSegs") || !slices.Contains(names, "OutSegs") {
			return t, errors.New("snmp: Tcp section lacks InSegs or OutSegs")
		}
		for i, name := range names {
			dst, ok := fields[name]
			if !ok {
				continue
			}
			n, err := strconv.ParseInt(vals[i], 10, 64)
			if err != nil {
				// The kernel prints these as unsigned long; past 2^63 wrap.
				u, uerr := strconv.ParseUint(vals[i], 10, 64)
				if uerr != nil {
					return t, fmt.Errorf("snmp: Tcp %s: %w", name, err)
				}
				n = int64(u)
			}
			*dst = n
		}
		return t, nil
	}
	if err := sc.Err(); err != nil {
		return t, fmt.Errorf("snmp: %w", err)
	}
	return t, errors.New("snmp: no Tcp section")
}

// parseMemoryStat returns the named counters of a cgroup memory.stat file.
func parseMemoryStat(b []byte) (map[string]int64, error) {
	m := map[string]int64{}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("memory.stat: %s: %w", f[0], err)
		}
		m[f[0]] = n
	}
	return m, nil
}
