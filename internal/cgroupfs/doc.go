// Package cgroupfs finds where the host's cgroup hierarchies are mounted:
// the cgroup v2 hierarchy and, on hybrid hosts, the v1 memory controller.
package cgroupfs

// Roots are the mount points of the cgroup hierarchies ("" when absent).
type Roots struct {
	// V2 is the cgroup2 mount (/sys/fs/cgroup, or /sys/fs/cgroup/unified
	// on hybrid hosts).
	V2 string
	// V1Memory is the cgroup v1 memory controller's mount, on hybrid hosts.
	V1Memory string
}
