package kubeenv

import (
	"fmt"
	"slices"
	"strings"
)

// HostState is what the environment could change on the host, as sorted
// text lines per section, so that two snapshots compare line by line. It
// covers the root network namespace's iptables and nf_tables rules, links,
// addresses, routes and rules; the sysctls kubelet and kube-proxy set;
// mounts; named network namespaces; the cgroups at the top of every
// hierarchy and any kubepods cgroup; the fixed host paths kubelet,
// containerd and CNI use; and processes named like the environment's.
// Objects of other runs and sessions are left out (names carrying another
// run id; named network namespaces, links and top-level cgroups with names
// the environment never uses), so that work in parallel on a shared host
// does not disturb the comparison.
type HostState struct {
	Sections map[string][]string
}

// Diff lists the lines that differ between h (before) and after, each
// prefixed with its section and "-" (gone) or "+" (new); nil when equal.
func (h HostState) Diff(after HostState) []string {
	var out []string
	var names []string
	for s := range h.Sections {
		names = append(names, s)
	}
	for s := range after.Sections {
		if _, ok := h.Sections[s]; !ok {
			names = append(names, s)
		}
	}
	slices.Sort(names)
	for _, s := range names {
		a, b := h.Sections[s], after.Sections[s]
		for _, l := range a {
			if _, found := slices.BinarySearch(b, l); !found {
				out = append(out, s+": - "+l)
			}
		}
		for _, l := range b {
			if _, found := slices.BinarySearch(a, l); !found {
				out = append(out, s+": + "+l)
			}
		}
	}
	return out
}

// String renders the snapshot as text, section by section.
func (h HostState) String() string {
	var b strings.Builder
	var names []string
	for s := range h.Sections {
		names = append(names, s)
	}
	slices.Sort(names)
	for _, s := range names {
		fmt.Fprintf(&b, "[%s]\n", s)
		for _, l := range h.Sections[s] {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
