// Package bpftest runs the helper processes, pods and checks that the BPF
// loader packages' privileged tests share.
package bpftest
