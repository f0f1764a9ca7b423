// Package steer loads the BPF programs that send a pod's outbound TCP
// connects to a proxy and tell that proxy each connection's original
// destination.
package steer
