// Package agent is the node agent's side of the kube provider: what
// `meshbench agent` (a privileged DaemonSet with hostPID and hostNetwork)
// does on its node.
//
// It serves a token-authenticated gRPC API (agentpb) on a unix socket or
// a loopback port, reached by port-forward through the API server:
//   - Resolve: a pod's handles (its processes, network namespace, cgroups,
//     veth pair and address), from nothing but its UID, /proc and the
//     cgroup hierarchies, whichever cgroup driver (cgroupfs or systemd)
//     the kubelet uses;
//   - Exec: the node's own iptables, tc or ip (chrooted into the node's
//     root when the agent runs in a container) in a pod's network
//     namespace;
//   - Start and Stop: the agent's own program (a proxy, a forwarder) in a
//     pod's network namespace and a cgroup beside its containers', as a
//     given user, killed with the agent.
//
// Not yet: BPF attachment, counters and metrics over the API, and the
// netns provider running its node operations through agents.
package agent
