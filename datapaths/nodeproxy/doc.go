// Package nodeproxy is the eBPF-steered per-node proxy datapath (Cilium
// per-node Envoy, Istio ambient ztunnel style): one proxy per node, and
// cgroup/connect4 on every pod steers its connects to it.
package nodeproxy
