package cgroupfs

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// Find reads this process's mount table (/proc/thread-self/mountinfo).
func Find() (Roots, error) {
	mounts, err := mountinfo.GetMounts(cgroups)
	if err != nil {
		return Roots{}, fmt.Errorf("find cgroup mounts: %w", err)
	}
	return rootsOf(mounts), nil
}

// FindUnder is Find for the hierarchies mounted below dir: the node's own,
// seen through its root filesystem mounted at dir (a node agent's
// /host), rather than the container's.
func FindUnder(dir string) (Roots, error) {
	dir = strings.TrimSuffix(dir, "/") + "/"
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		skip, _ = cgroups(m)
		return skip || !strings.HasPrefix(m.Mountpoint, dir), false
	})
	if err != nil {
		return Roots{}, fmt.Errorf("find cgroup mounts under %s: %w", dir, err)
	}
	return rootsOf(mounts), nil
}

// Parse reads a mount table in /proc/PID/mountinfo's format.
func Parse(r io.Reader) (Roots, error) {
	mounts, err := mountinfo.GetMountsFromReader(r, cgroups)
	if err != nil {
		return Roots{}, fmt.Errorf("parse mountinfo: %w", err)
	}
	return rootsOf(mounts), nil
}

// cgroups keeps cgroup and cgroup2 mounts.
func cgroups(m *mountinfo.Info) (skip, stop bool) {
	return m.FSType != "cgroup" && m.FSType != "cgroup2", false
}

// rootsOf returns the first cgroup2 mount and the first cgroup v1 mount
// whose controllers (its super options) include memory.
func rootsOf(mounts []*mountinfo.Info) Roots {
	var r Roots
	for _, m := range mounts {
		switch m.FSType {
		case "cgroup2":
			if r.V2 == "" {
				r.V2 = m.Mountpoint
			}
		case "cgroup":
			if r.V1Memory == "" && slices.Contains(strings.Split(m.VFSOptions, ","), "memory") {
				r.V1Memory = m.Mountpoint
			}
		}
	}
	return r
}
