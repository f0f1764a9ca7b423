// Package sockmap is the sockmap-accelerated sidecar datapath (Merbridge
// style): the sidecar datapath with the app↔sidecar hop done in eBPF.
// cgroup/connect4 steers the app's connects to its sidecar, sock_ops and
// sk_msg splice bytes between the two local sockets, and cgroup/getsockopt
// answers SO_ORIGINAL_DST; inbound traffic still enters through the iptables
// PREROUTING rule.
package sockmap
