package metrics

import (
	"errors"
	"slices"
	"time"
)

// ErrNotSupported is returned (wrapped) when a counter source does not exist
// on this host, for example a cgroup without a memory controller.
var ErrNotSupported = errors.New("not supported")

// ErrProcessGone is returned (wrapped) by ReadProcess when the process does
// not exist any more, or is a zombie.
var ErrProcessGone = errors.New("process gone")

// ClockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. Linux
// fixes it at 100 for every architecture's user-space ABI.
const ClockTicks = 100

// ProcStat is what the kernel counts for one process (thread group).
//
// CPU is given twice. CPUSeconds comes from utime+stime of /proc/PID/stat:
// it covers every thread the process ever had, including exited ones, and
// the kernel derives it from its nanosecond run time, but it is truncated to
// clock ticks (10 ms). CPUNanos sums the first field of
// /proc/PID/task/*/schedstat: nanosecond precise, but it only covers threads
// alive when read. Delta uses CPUSeconds for totals; see ProcDelta.
//
// Context switches are summed over /proc/PID/task/*/status: the counts in
// /proc/PID/status are the thread group leader's only (verified on kernel
// 6.18: a Go process with 10 threads showed 1,926 voluntary switches in
// /proc/self/status and 18,356 summed over its tasks). Exited threads' counts
// are lost.
//
// A ProcStat read by ReadTree covers a process and its descendants: every
// counter is summed over them (Tasks holds every thread of each), and
// Descendants names them. CPUSeconds then also holds the CPU time of
// descendants that exited and were waited for inside the tree (cutime and
// cstime of /proc/PID/stat), so it does not drop when a child is reaped.
type ProcStat struct {
	PID  int    `json:"pid"`
	Comm string `json:"comm"`
	// StartTicks is the process's start time in clock ticks after boot;
	// with PID it identifies the process across pid reuse.
	StartTicks uint64 `json:"start_ticks"`
	// Threads is the number of threads when read.
	Threads    int     `json:"threads"`
	CPUSeconds float64 `json:"cpu_seconds"`
	CPUNanos   int64   `json:"cpu_nanos"`
	// VoluntaryCtxt and NonvoluntaryCtxt are summed over the live threads.
	VoluntaryCtxt    int64 `json:"voluntary_ctxt_switches"`
	NonvoluntaryCtxt int64 `json:"nonvoluntary_ctxt_switches"`
	// RSSBytes, PSSBytes and USSBytes come from /proc/PID/smaps_rollup;
	// USSBytes is Private_Clean + Private_Dirty: the pages no other process
	// maps. RSS − USS are pages it shares (with other processes running the
	// same binary, say).
	RSSBytes int64 `json:"rss_bytes"`
	PSSBytes int64 `json:"pss_bytes"`
	USSBytes int64 `json:"uss_bytes"`
	// Tasks are the per-thread counters the totals were summed from, so that
	// Diff can count threads that started or ended between two reads.
	Tasks []TaskStat `json:"tasks,omitempty"`
	// Descendants are the processes below this one whose counters are summed
	// into it (ReadTree), in the order they were found; none for a process
	// read alone or one without children.
	Descendants []Member `json:"descendants,omitempty"`
}

// Member is a descendant counted in another process's ProcStat: for
// example the Envoy binary a proxy wrapper runs as its child.
type Member struct {
	PID        int    `json:"pid"`
	PPID       int    `json:"ppid"`
	Comm       string `json:"comm"`
	StartTicks uint64 `json:"start_ticks"`
	// CPUSeconds, RSSBytes, PSSBytes and USSBytes are the member's own
	// (its share of the tree's sums): cumulative CPU in a snapshot, over
	// the interval in a Delta (in full for a member that appeared in it).
	CPUSeconds float64 `json:"cpu_seconds,omitempty"`
	RSSBytes   int64   `json:"rss_bytes,omitempty"`
	PSSBytes   int64   `json:"pss_bytes,omitempty"`
	USSBytes   int64   `json:"uss_bytes,omitempty"`
}

// ContextSwitches returns voluntary plus involuntary switches.
func (p ProcStat) ContextSwitches() int64 { return p.VoluntaryCtxt + p.NonvoluntaryCtxt }

// TaskStat is what the kernel counts for one thread.
type TaskStat struct {
	TID              int   `json:"tid"`
	CPUNanos         int64 `json:"cpu_nanos"`
	VoluntaryCtxt    int64 `json:"voluntary_ctxt_switches"`
	NonvoluntaryCtxt int64 `json:"nonvoluntary_ctxt_switches"`
}

// TCP holds the TCP counters of one network namespace's /proc/net/snmp, or a
// sum or difference of them.
type TCP struct {
	InSegs       int64 `json:"in_segs"`
	OutSegs      int64 `json:"out_segs"`
	RetransSegs  int64 `json:"retrans_segs"`
	ActiveOpens  int64 `json:"active_opens"`
	PassiveOpens int64 `json:"passive_opens"`
	AttemptFails int64 `json:"attempt_fails"`
	EstabResets  int64 `json:"estab_resets"`
	InErrs       int64 `json:"in_errs"`
	OutRsts      int64 `json:"out_rsts"`
}

// Add returns t + o, counter by counter.
func (t TCP) Add(o TCP) TCP {
	return TCP{
		InSegs:       t.InSegs + o.InSegs,
		OutSegs:      t.OutSegs + o.OutSegs,
		RetransSegs:  t.RetransSegs + o.RetransSegs,
		ActiveOpens:  t.ActiveOpens + o.ActiveOpens,
		PassiveOpens: t.PassiveOpens + o.PassiveOpens,
		AttemptFails: t.AttemptFails + o.AttemptFails,
		EstabResets:  t.EstabResets + o.EstabResets,
		InErrs:       t.InErrs + o.InErrs,
		OutRsts:      t.OutRsts + o.OutRsts,
	}
}

// Sub returns t - o, counter by counter: the change from an earlier reading o
// to t.
func (t TCP) Sub(o TCP) TCP {
	return TCP{
		InSegs:       t.InSegs - o.InSegs,
		OutSegs:      t.OutSegs - o.OutSegs,
		RetransSegs:  t.RetransSegs - o.RetransSegs,
		ActiveOpens:  t.ActiveOpens - o.ActiveOpens,
		PassiveOpens: t.PassiveOpens - o.PassiveOpens,
		AttemptFails: t.AttemptFails - o.AttemptFails,
		EstabResets:  t.EstabResets - o.EstabResets,
		InErrs:       t.InErrs - o.InErrs,
		OutRsts:      t.OutRsts - o.OutRsts,
	}
}

// Segments returns InSegs + OutSegs.
func (t TCP) Segments() int64 { return t.InSegs + t.OutSegs }

// CgroupMemory is the memory charged to one cgroup.
type CgroupMemory struct {
	// Version is the cgroup hierarchy's version, 1 or 2.
	Version int `json:"version"`
	// UsageBytes is memory.usage_in_bytes (v1) or memory.current (v2).
	UsageBytes int64 `json:"usage_bytes"`
	// AnonBytes is total_rss (v1, hierarchical) or anon (v2) of memory.stat.
	AnonBytes int64 `json:"anon_bytes"`
	// FileBytes is total_cache (v1) or file (v2) of memory.stat.
	FileBytes int64 `json:"file_bytes"`
}

// Snapshot is a reading of a set of processes and network namespaces at one
// time.
type Snapshot struct {
	Time time.Time `json:"time"`
	// Procs are the processes that were read, by pid, each with its
	// descendants (ReadTree).
	Procs map[int]ProcStat `json:"procs"`
	// Gone lists the pids that were asked for but no longer existed.
	Gone []int `json:"gone,omitempty"`
	// TCP holds each network namespace's counters, by path.
	TCP map[string]TCP `json:"tcp"`
}

// TotalTCP returns the TCP counters summed over the snapshot's namespaces.
func (s *Snapshot) TotalTCP() TCP {
	var t TCP
	for _, c := range s.TCP {
		t = t.Add(c)
	}
	return t
}

// ProcDelta is how one process's counters changed between two snapshots.
type ProcDelta struct {
	PID  int    `json:"pid"`
	Comm string `json:"comm"`
	// CPUSeconds is the change in utime+stime: every thread, 10 ms
	// resolution. Use it for totals.
	CPUSeconds float64 `json:"cpu_seconds"`
	// CPUNanos is the change in per-thread run time, summed over threads
	// alive at the second snapshot (a thread that started in between counts
	// in full); run time of threads that exited in between is missing.
	CPUNanos int64 `json:"cpu_nanos"`
	// VoluntaryCtxt and NonvoluntaryCtxt are counted per thread like
	// CPUNanos.
	VoluntaryCtxt    int64 `json:"voluntary_ctxt_switches"`
	NonvoluntaryCtxt int64 `json:"nonvoluntary_ctxt_switches"`
	// RSSBytes, PSSBytes and USSBytes are the values at the second
	// snapshot.
	RSSBytes int64 `json:"rss_bytes"`
	PSSBytes int64 `json:"pss_bytes"`
	USSBytes int64 `json:"uss_bytes"`
	// Descendants are the processes counted with this one at the second
	// snapshot (see ProcStat).
	Descendants []Member `json:"descendants,omitempty"`
}

// ContextSwitches returns voluntary plus involuntary switches.
func (d ProcDelta) ContextSwitches() int64 { return d.VoluntaryCtxt + d.NonvoluntaryCtxt }

// Delta is the change between two snapshots.
type Delta struct {
	Interval time.Duration `json:"interval"`
	// Procs holds the processes present in both snapshots, by pid.
	Procs map[int]ProcDelta `json:"procs"`
	// Gone are processes of the first snapshot missing from the second
	// (exited, or their pid reused), as the first snapshot read them.
	Gone []ProcStat `json:"gone,omitempty"`
	// Appeared are processes of the second snapshot missing from the first
	// (started in between, or not asked for), as the second one read them.
	Appeared []ProcStat `json:"appeared,omitempty"`
	// TCP is the change summed over the namespaces read in both snapshots.
	TCP TCP `json:"tcp"`
	// Namespaces is how many namespaces TCP sums over.
	Namespaces int `json:"namespaces"`
}

// CPUSeconds returns the CPU time of Procs, summed.
func (d Delta) CPUSeconds() float64 {
	var s float64
	for _, p := range d.Procs {
		s += p.CPUSeconds
	}
	return s
}

// ContextSwitches returns the context switches of Procs, summed.
func (d Delta) ContextSwitches() int64 {
	var s int64
	for _, p := range d.Procs {
		s += p.ContextSwitches()
	}
	return s
}

// Diff returns the change from before to after. A process is matched by pid
// and start time; one present in only one snapshot is listed in Gone or
// Appeared, never an error. Either snapshot may be nil.
func Diff(before, after *Snapshot) Delta {
	if before == nil {
		before = &Snapshot{}
	}
	if after == nil {
		after = &Snapshot{}
	}
	d := Delta{Procs: map[int]ProcDelta{}}
	if !before.Time.IsZero() && !after.Time.IsZero() {
		d.Interval = after.Time.Sub(before.Time)
	}
	for pid, a := range after.Procs {
		b, ok := before.Procs[pid]
		if !ok || b.StartTicks != a.StartTicks {
			d.Appeared = append(d.Appeared, a)
			continue
		}
		d.Procs[pid] = diffProc(b, a)
	}
	for pid, b := range before.Procs {
		if a, ok := after.Procs[pid]; !ok || a.StartTicks != b.StartTicks {
			d.Gone = append(d.Gone, b)
		}
	}
	byPID := func(x, y ProcStat) int { return x.PID - y.PID }
	slices.SortFunc(d.Appeared, byPID)
	slices.SortFunc(d.Gone, byPID)
	for path, a := range after.TCP {
		if b, ok := before.TCP[path]; ok {
			d.TCP = d.TCP.Add(a.Sub(b))
			d.Namespaces++
		}
	}
	return d
}

// diffMembers returns the members of a tree at the end of an interval
// with their CPU time over it: a member found at the start (same pid and
// start time) counts the difference, one that appeared counts in full.
func diffMembers(before, after []Member) []Member {
	if len(after) == 0 {
		return nil
	}
	type key struct {
		pid   int
		start uint64
	}
	prev := make(map[key]float64, len(before))
	for _, m := range before {
		prev[key{m.PID, m.StartTicks}] = m.CPUSeconds
	}
	out := make([]Member, len(after))
	for i, m := range after {
		out[i] = m
		out[i].CPUSeconds = max(0, m.CPUSeconds-prev[key{m.PID, m.StartTicks}])
	}
	return out
}

// diffProc diffs one process. Per-thread counters are diffed thread by
// thread; a thread whose counters went down is a reused tid and counts in
// full.
func diffProc(b, a ProcStat) ProcDelta {
	d := ProcDelta{
		PID:         a.PID,
		Comm:        a.Comm,
		CPUSeconds:  max(0, a.CPUSeconds-b.CPUSeconds),
		RSSBytes:    a.RSSBytes,
		PSSBytes:    a.PSSBytes,
		USSBytes:    a.USSBytes,
		Descendants: diffMembers(b.Descendants, a.Descendants),
	}
	prev := make(map[int]TaskStat, len(b.Tasks))
	for _, t := range b.Tasks {
		prev[t.TID] = t
	}
	for _, t := range a.Tasks {
		p, ok := prev[t.TID]
		if ok && (t.CPUNanos < p.CPUNanos || t.VoluntaryCtxt < p.VoluntaryCtxt || t.NonvoluntaryCtxt < p.NonvoluntaryCtxt) {
			ok = false
		}
		if !ok {
			p = TaskStat{}
		}
		d.CPUNanos += t.CPUNanos - p.CPUNanos
		d.VoluntaryCtxt += t.VoluntaryCtxt - p.VoluntaryCtxt
		d.NonvoluntaryCtxt += t.NonvoluntaryCtxt - p.NonvoluntaryCtxt
	}
	return d
}
