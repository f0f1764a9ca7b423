package netns

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/meshbench/meshbench/internal/cgroupfs"

	"golang.org/x/sys/unix"
)

// cgroupRoots are the hierarchies pods' cgroups are made in; "" when absent.
type cgroupRoots struct {
	v2  string // cgroup v2 mount
	mem string // cgroup v1 memory controller mount
}

func (r cgroupRoots) list() []string {
	var out []string
	for _, d := range []string{r.v2, r.mem} {
		if d != "" {
			out = append(out, d)
		}
	}
	return out
}

// roots resolves the provider's options against the host's mounts.
func (p *Provider) roots() (cgroupRoots, error) {
	var r cgroupRoots
	var err error
	if p.opts.CgroupRoot == "" || p.opts.MemoryCgroupRoot == "" {
		r, err = detectCgroupRoots()
		if err != nil {
			return r, err
		}
	}
	switch p.opts.CgroupRoot {
	case "":
	case Disabled:
		r.v2 = ""
	default:
		r.v2 = p.opts.CgroupRoot
	}
	switch p.opts.MemoryCgroupRoot {
	case "":
	case Disabled:
		r.mem = ""
	default:
		r.mem = p.opts.MemoryCgroupRoot
	}
	return r, nil
}

// detectCgroupRoots finds the cgroup2 mount and the cgroup v1 memory
// controller mount.
func detectCgroupRoots() (cgroupRoots, error) {
	r, err := cgroupfs.Find()
	if err != nil {
		return cgroupRoots{}, err
	}
	return cgroupRoots{v2: r.V2, mem: r.V1Memory}, nil
}

// cgroupPIDs reads the pids in dir's cgroup.procs.
func cgroupPIDs(dir string) ([]int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// cgroupDirs lists dir and every cgroup below it, deepest first.
func cgroupDirs(dir string) ([]string, error) {
	var dirs []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, path)
		}
		return nil
	})
	slices.SortStableFunc(dirs, func(a, b string) int {
		return strings.Count(b, "/") - strings.Count(a, "/")
	})
	return dirs, err
}

// killCgroup sends SIGKILL to every process in dir (not below it) and
// returns their pids. The harness itself is never killed.
func killCgroup(dir string) ([]int, error) {
	pids, err := cgroupPIDs(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("list processes of cgroup %s: %w", dir, err)
	}
	self := slices.Contains(pids, os.Getpid())
	if !self && len(pids) > 0 {
		// cgroup v2 kills the whole cgroup at once, forks in flight too.
		if err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0); err == nil {
			return pids, nil
		}
	}
	var errs []error
	var killed []int
	for _, pid := range pids {
		if pid == os.Getpid() {
			continue
		}
		if err := unix.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("kill pid %d in cgroup %s: %w", pid, dir, err))
			continue
		}
		killed = append(killed, pid)
	}
	return killed, errors.Join(errs...)
}

// cgroupRemoveTimeout bounds the wait for killed processes to leave a cgroup.
const cgroupRemoveTimeout = 5 * time.Second

// removeCgroupTree kills every process in top and below it and removes the
// cgroups, deepest first, retrying while the processes exit. It returns
// what it removed (cgroups and killed processes) for Down's report.
func removeCgroupTree(ctx context.Context, top string) ([]string, error) {
	dirs, err := cgroupDirs(top)
	if err != nil {
		return nil, fmt.Errorf("list cgroup %s: %w", top, err)
	}
	var removed []string
	var errs []error
	for _, d := range dirs {
		killed, err := killCgroup(d)
		for _, pid := range killed {
			removed = append(removed, fmt.Sprintf("process %d in cgroup %s", pid, d))
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	deadline := time.Now().Add(cgroupRemoveTimeout)
	for _, d := range dirs {
		for {
			err := unix.Rmdir(d)
			if err == nil || errors.Is(err, unix.ENOENT) {
				if err == nil {
					removed = append(removed, "cgroup "+d)
				}
				break
			}
			if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) || ctx.Err() != nil {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
				break
			}
			// Processes are exiting, or one was forked since: kill again.
			if _, err := killCgroup(d); err != nil {
				errs = append(errs, err)
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return removed, errors.Join(errs...)
}

// writePID moves pid into the cgroup at dir.
func writePID(dir string, pid int) error {
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		return fmt.Errorf("move pid %d to cgroup %s: %w", pid, dir, err)
	}
	return nil
}
