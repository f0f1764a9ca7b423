package netns

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// proc is a process found in one of the run's namespaces.
type proc struct {
	pid   int
	comm  string
	netns string
}

func (p proc) String() string {
	return fmt.Sprintf("process %d (%s) in netns %s", p.pid, p.comm, p.netns)
}

// procsInNetns lists the processes (other than this one) whose network
// namespace is one of paths.
func procsInNetns(paths []string) ([]proc, error) {
	ids := map[nsID]string{}
	for _, p := range paths {
		id, err := statNS(p)
		if err != nil {
			continue
		}
		ids[id] = p
	}
	if len(ids) == 0 {
		return nil, nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var out []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		id, err := statNS("/proc/" + e.Name() + "/ns/net")
		if err != nil {
			continue // exited, or a zombie
		}
		if path, ok := ids[id]; ok {
			comm, _ := os.ReadFile("/proc/" + e.Name() + "/comm")
			out = append(out, proc{pid: pid, comm: strings.TrimSpace(string(comm)), netns: path})
		}
	}
	return out, nil
}

// procExitTimeout bounds the wait for killed processes to leave a namespace.
const procExitTimeout = 5 * time.Second

// killNetnsProcs kills every process in the namespaces at paths and waits
// until none is left in them (zombies no longer count).
func killNetnsProcs(paths []string) ([]proc, error) {
	var killed []proc
	seen := map[int]bool{}
	deadline := time.Now().Add(procExitTimeout)
	for {
		ps, err := procsInNetns(paths)
		if err != nil {
			return killed, err
		}
		if len(ps) == 0 {
			return killed, nil
		}
		if time.Now().After(deadline) {
			var errs []error
			for _, p := range ps {
				errs = append(errs, fmt.Errorf("%s: still running after SIGKILL", p))
			}
			return killed, errors.Join(errs...)
		}
		for _, p := range ps {
			if err := unix.Kill(p.pid, syscall.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
				return killed, fmt.Errorf("kill %s: %w", p, err)
			}
			if !seen[p.pid] {
				seen[p.pid] = true
				killed = append(killed, p)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
}
