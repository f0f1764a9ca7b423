// Package agent is the node agent's side of the kube provider: what
// `meshbench agent` (a privileged DaemonSet with hostPID and hostNetwork)
// does on its node.
//
// So far it resolves a pod to the handles datapaths, faults and metrics
// act on (its processes, network namespace, cgroups, veth pair and
// address), from nothing but the pod's UID, /proc and the cgroup
// hierarchies, whichever cgroup driver (cgroupfs or systemd) the kubelet
// uses. The gRPC service that serves these handles and performs the
// node-local operations is not written yet.
package agent
