// Package attach loads the project's cgroup BPF programs (the steer and
// sockmap packages') on a node and attaches them to its pods' cgroups, in
// this process or through the node's agent: the one seam datapaths load
// BPF through, as nsutil.Host is for namespaces. A Set stays loaded while
// its loader holds it; nothing is pinned, so a loader that exits (the
// harness, or an agent) leaves nothing behind.
package attach
