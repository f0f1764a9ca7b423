package metrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/meshbench/meshbench/internal/nsutil"
)

// ReadProcess reads the counters of process pid from /proc. It returns an
// error wrapping ErrProcessGone when the process has exited (or is a
// zombie), including when it exits while being read.
func ReadProcess(pid int) (ProcStat, error) {
	p, err := readProcess(pid)
	if err != nil && !errors.Is(err, ErrProcessGone) && processGone(pid) {
		err = fmt.Errorf("%w (%v)", ErrProcessGone, err)
	}
	if err != nil {
		return ProcStat{}, fmt.Errorf("read process %d: %w", pid, err)
	}
	return p, nil
}

// ReadTree reads process pid as ReadProcess does, and every process below
// it (its children, their children, ...), and returns them summed into one
// ProcStat whose Descendants names them: the cost of everything the process
// started, such as the Envoy binary a proxy wrapper runs as its child. Its
// CPUSeconds also counts descendants that exited and were waited for inside
// the tree (see ProcStat). A descendant in skip is left out with everything
// below it (it is read on its own). A descendant that exits while being read
// is left out; a zombie one counts its CPU time only. Only the root's exit is
// an error, wrapping ErrProcessGone.
func ReadTree(pid int, skip map[int]bool) (ProcStat, error) {
	root, st, err := readProc(pid, false)
	if err != nil && !errors.Is(err, ErrProcessGone) && processGone(pid) {
		err = fmt.Errorf("%w (%v)", ErrProcessGone, err)
	}
	if err != nil {
		return ProcStat{}, fmt.Errorf("read process %d: %w", pid, err)
	}
	root.CPUSeconds += float64(st.cutime+st.cstime) / ClockTicks
	seen := map[int]bool{pid: true}
	for queue := []int{pid}; len(queue) > 0; queue = queue[1:] {
		kids, err := childrenOf(queue[0])
		if err != nil {
			return ProcStat{}, fmt.Errorf("read process %d: children of %d: %w", pid, queue[0], err)
		}
		for _, c := range kids {
			if seen[c] || skip[c] {
				continue
			}
			seen[c] = true
			p, cst, err := readProc(c, true)
			if errors.Is(err, ErrProcessGone) || (err != nil && processGone(c)) {
				continue
			}
			if err != nil {
				return ProcStat{}, fmt.Errorf("read process %d: descendant %d: %w", pid, c, err)
			}
			root.Threads += p.Threads
			root.CPUSeconds += p.CPUSeconds + float64(cst.cutime+cst.cstime)/ClockTicks
			root.CPUNanos += p.CPUNanos
			root.VoluntaryCtxt += p.VoluntaryCtxt
			root.NonvoluntaryCtxt += p.NonvoluntaryCtxt
			root.RSSBytes += p.RSSBytes
			root.PSSBytes += p.PSSBytes
			root.USSBytes += p.USSBytes
			root.Tasks = append(root.Tasks, p.Tasks...)
			root.Descendants = append(root.Descendants, Member{
				PID: c, PPID: cst.ppid, Comm: p.Comm, StartTicks: p.StartTicks,
				CPUSeconds: p.CPUSeconds, RSSBytes: p.RSSBytes, PSSBytes: p.PSSBytes, USSBytes: p.USSBytes,
			})
			queue = append(queue, c)
		}
	}
	return root, nil
}

func readProcess(pid int) (ProcStat, error) {
	p, _, err := readProc(pid, false)
	return p, err
}

// readProc reads one process and returns its stat line too. A zombie is
// ErrProcessGone, unless zombieOK: then it is read from its stat alone (its
// CPU time; it has no memory or threads left).
func readProc(pid int, zombieOK bool) (ProcStat, procStatLine, error) {
	dir := "/proc/" + strconv.Itoa(pid)
	b, err := os.ReadFile(dir + "/stat")
	if err != nil {
		if gone(err) {
			return ProcStat{}, procStatLine{}, ErrProcessGone
		}
		return ProcStat{}, procStatLine{}, err
	}
	st, err := parseStat(b)
	if err != nil {
		return ProcStat{}, st, err
	}
	p := ProcStat{
		PID:        pid,
		Comm:       st.comm,
		StartTicks: st.startTicks,
		Threads:    st.threads,
		CPUSeconds: float64(st.utime+st.stime) / ClockTicks,
	}
	if st.state == 'Z' || st.state == 'X' {
		if zombieOK {
			p.Threads = 0
			return p, st, nil
		}
		return ProcStat{}, st, ErrProcessGone
	}
	b, err = os.ReadFile(dir + "/smaps_rollup")
	if err != nil {
		return ProcStat{}, st, err
	}
	if p.RSSBytes, p.PSSBytes, p.USSBytes, err = parseSmapsRollup(b); err != nil {
		return ProcStat{}, st, err
	}
	tids, err := os.ReadDir(dir + "/task")
	if err != nil {
		return ProcStat{}, st, err
	}
	for _, e := range tids {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		t, err := readTask(dir+"/task/"+e.Name(), tid)
		if gone(err) {
			continue // the thread exited after ReadDir
		}
		if err != nil {
			return ProcStat{}, st, err
		}
		p.Tasks = append(p.Tasks, t)
		p.CPUNanos += t.CPUNanos
		p.VoluntaryCtxt += t.VoluntaryCtxt
		p.NonvoluntaryCtxt += t.NonvoluntaryCtxt
	}
	return p, st, nil
}

// hasChildrenFiles reports whether the kernel has /proc/PID/task/TID/children
// (CONFIG_PROC_CHILDREN).
var hasChildrenFiles = sync.OnceValue(func() bool {
	_, err := os.Stat("/proc/thread-self/children")
	return err == nil
})

// childrenOf returns the pids of pid's children: from the children files of
// its threads, or, on kernels without them, by scanning /proc for processes
// whose parent is pid. A pid that is gone has none.
func childrenOf(pid int) ([]int, error) {
	if !hasChildrenFiles() {
		return scanChildren(pid)
	}
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tids, err := os.ReadDir(dir)
	if gone(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var kids []int
	for _, e := range tids {
		b, err := os.ReadFile(dir + "/" + e.Name() + "/children")
		if gone(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				kids = append(kids, c)
			}
		}
	}
	return kids, nil
}

// scanChildren finds pid's children by reading every process's parent.
func scanChildren(pid int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var kids []int
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone, or not ours to read
		}
		if st, err := parseStat(b); err == nil && st.ppid == pid {
			kids = append(kids, c)
		}
	}
	return kids, nil
}

func readTask(dir string, tid int) (TaskStat, error) {
	t := TaskStat{TID: tid}
	b, err := os.ReadFile(dir + "/schedstat")
	if err != nil {
		return t, err
	}
	if t.CPUNanos, err = parseSchedstat(b); err != nil {
		return t, err
	}
	b, err = os.ReadFile(dir + "/status")
	if err != nil {
		return t, err
	}
	t.VoluntaryCtxt, t.NonvoluntaryCtxt, err = parseStatus(b)
	return t, err
}

// gone reports whether err says a /proc entry vanished.
func gone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH)
}

// processGone reports whether pid no longer names a live process.
func processGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return gone(err)
	}
	st, err := parseStat(b)
	return err == nil && (st.state == 'Z' || st.state == 'X')
}

// ReadSNMP reads the TCP counters of the network namespace at netnsPath
// (/proc/net/snmp as seen from inside it). An empty path reads the caller's
// own namespace.
func ReadSNMP(netnsPath string) (TCP, error) {
	if netnsPath == "" {
		b, err := os.ReadFile("/proc/thread-self/net/snmp")
		if err != nil {
			return TCP{}, fmt.Errorf("read snmp: %w", err)
		}
		return parseSNMP(b)
	}
	var b []byte
	err := nsutil.Do(netnsPath, func() error {
		var err error
		b, err = os.ReadFile("/proc/thread-self/net/snmp")
		return err
	})
	if err != nil {
		return TCP{}, fmt.Errorf("read snmp of netns %s: %w", netnsPath, err)
	}
	t, err := parseSNMP(b)
	if err != nil {
		return TCP{}, fmt.Errorf("netns %s: %w", netnsPath, err)
	}
	return t, nil
}

// SumSNMP returns the TCP counters summed over the namespaces at paths.
func SumSNMP(paths []string) (TCP, error) {
	var sum TCP
	for _, p := range paths {
		t, err := ReadSNMP(p)
		if err != nil {
			return TCP{}, err
		}
		sum = sum.Add(t)
	}
	return sum, nil
}

// ReadCgroupMemory reads the memory charged to the cgroup directory dir of
// either hierarchy: a cgroup v1 memory controller directory
// (memory.usage_in_bytes) or a cgroup v2 directory (memory.current). It
// returns an error wrapping ErrNotSupported when dir is empty or has no
// memory accounting.
func ReadCgroupMemory(dir string) (CgroupMemory, error) {
	if dir == "" {
		return CgroupMemory{}, fmt.Errorf("read cgroup memory: no cgroup: %w", ErrNotSupported)
	}
	var m CgroupMemory
	var anonKey, fileKey string
	usage, err := os.ReadFile(filepath.Join(dir, "memory.current"))
	switch {
	case err == nil:
		m.Version, anonKey, fileKey = 2, "anon", "file"
	case errors.Is(err, fs.ErrNotExist):
		usage, err = os.ReadFile(filepath.Join(dir, "memory.usage_in_bytes"))
		if errors.Is(err, fs.ErrNotExist) {
			return m, fmt.Errorf("read cgroup memory of %s: no memory controller: %w", dir, ErrNotSupported)
		}
		if err != nil {
			return m, fmt.Errorf("read cgroup memory of %s: %w", dir, err)
		}
		m.Version, anonKey, fileKey = 1, "total_rss", "total_cache"
	default:
		return m, fmt.Errorf("read cgroup memory of %s: %w", dir, err)
	}
	if m.UsageBytes, err = strconv.ParseInt(string(bytes.TrimSpace(usage)), 10, 64); err != nil {
		return m, fmt.Errorf("read cgroup memory of %s: usage: %w", dir, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return m, fmt.Errorf("read cgroup memory of %s: %w", dir, err)
	}
	stat, err := parseMemoryStat(b)
	if err != nil {
		return m, fmt.Errorf("read cgroup memory of %s: %w", dir, err)
	}
	m.AnonBytes, m.FileBytes = stat[anonKey], stat[fileKey]
	return m, nil
}

// TakeSnapshot reads the processes pids, each with its descendants
// (ReadTree; a descendant that is itself in pids is read on its own), and
// the TCP counters of the network namespaces at netns. A process that has
// exited is listed in Gone, not an error; a namespace that cannot be read is
// an error.
func TakeSnapshot(ctx context.Context, pids []int, netns []string) (*Snapshot, error) {
	s := &Snapshot{Time: time.Now(), Procs: make(map[int]ProcStat, len(pids)), TCP: make(map[string]TCP, len(netns))}
	skip := make(map[int]bool, len(pids))
	for _, pid := range pids {
		skip[pid] = true
	}
	for _, pid := range pids {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("snapshot: %w", err)
		}
		p, err := ReadTree(pid, skip)
		if errors.Is(err, ErrProcessGone) {
			s.Gone = append(s.Gone, pid)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("snapshot: %w", err)
		}
		s.Procs[pid] = p
	}
	for _, path := range netns {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("snapshot: %w", err)
		}
		t, err := ReadSNMP(path)
		if err != nil {
			return nil, fmt.Errorf("snapshot: %w", err)
		}
		s.TCP[path] = t
	}
	slices.Sort(s.Gone)
	return s, nil
}
