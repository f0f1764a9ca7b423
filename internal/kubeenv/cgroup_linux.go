package kubeenv

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cgroups are the host's cgroup hierarchies (every v1 controller mount and
// the v2 mount): kubelet's cgroupfs driver makes its pod cgroups in each of
// them, so the environment creates, empties and removes its own in each.
type cgroups struct {
	roots []string // mount points
}

func detectCgroups() (*cgroups, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("cgroup mounts: %w", err)
	}
	defer f.Close()
	var roots []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent maj:min root mountpoint opts ... - fstype source superopts
		fields := strings.Fields(sc.Text())
		i := slices.Index(fields, "-")
		if i < 0 || i+1 >= len(fields) || len(fields) < 5 {
			continue
		}
		if fs := fields[i+1]; (fs == "cgroup" || fs == "cgroup2") && fields[3] == "/" {
			roots = append(roots, unescape(fields[4]))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cgroup mounts: %w", err)
	}
	if len(roots) == 0 {
		return nil, errors.New("cgroup mounts: none found")
	}
	slices.Sort(roots)
	return &cgroups{roots: slices.Compact(roots)}, nil
}

// unescape undoes mountinfo's octal escapes.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// create makes rel (e.g. meshbench-ID/k0) in every hierarchy, copying the
// parent's cpuset so tasks may join it.
func (c *cgroups) create(rel string) error {
	for _, root := range c.roots {
		parts := strings.Split(strings.Trim(rel, "/"), "/")
		dir := root
		for _, p := range parts {
			parent := dir
			dir = filepath.Join(dir, p)
			if err := os.Mkdir(dir, 0o755); err != nil {
				if errors.Is(err, os.ErrExist) {
					continue
				}
				return fmt.Errorf("create cgroup %s: %w", dir, err)
			}
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					continue
				}
				v, err := os.ReadFile(filepath.Join(parent, f))
				if err != nil {
					return fmt.Errorf("create cgroup %s: %w", dir, err)
				}
				if len(strings.TrimSpace(string(v))) == 0 {
					continue // cgroup v2 leaves these empty: inherited
				}
				if err := os.WriteFile(filepath.Join(dir, f), v, 0); err != nil {
					return fmt.Errorf("create cgroup %s: %w", dir, err)
				}
			}
		}
	}
	return nil
}

// join moves pid into rel in every hierarchy.
func (c *cgroups) join(rel string, pid int) error {
	for _, root := range c.roots {
		f := filepath.Join(root, rel, "cgroup.procs")
		if err := os.WriteFile(f, []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("move %d into cgroup %s: %w", pid, filepath.Join(root, rel), err)
		}
	}
	return nil
}

// pids lists the processes in rel and below, in any hierarchy.
func (c *cgroups) pids(rel string) []int {
	var out []int
	for _, root := range c.roots {
		filepath.WalkDir(filepath.Join(root, rel), func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			if err != nil {
				return nil
			}
			for _, l := range strings.Fields(string(b)) {
				if n, err := strconv.Atoi(l); err == nil {
					out = append(out, n)
				}
			}
			return nil
		})
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// dirs lists rel and the cgroups below it, deepest first, in every hierarchy.
func (c *cgroups) dirs(rel string) []string {
	var out []string
	for _, root := range c.roots {
		var here []string
		filepath.WalkDir(filepath.Join(root, rel), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				here = append(here, p)
			}
			return nil
		})
		slices.Reverse(here)
		out = append(out, here...)
	}
	return out
}

// destroy kills every process in rel and below, waits for them to go, and
// removes the cgroups. It returns what it could not remove.
func (c *cgroups) destroy(rel string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	killed := map[int]bool{}
	for {
		pids := c.pids(rel)
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s: processes %v survive SIGKILL", rel, pids)
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
			killed[pid] = true
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Orphans (containerd's shims, containers) leave the cgroup when they
	// die but stay zombies until init reaps them; give it a moment, so
	// that nothing of the run shows in the process table afterwards.
	for pid := range killed {
		for time.Now().Before(deadline) {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	var errs []error
	for _, d := range c.dirs(rel) {
		for {
			err := syscall.Rmdir(d)
			if err == nil || errors.Is(err, syscall.ENOENT) {
				break
			}
			if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return errors.Join(errs...)
}
