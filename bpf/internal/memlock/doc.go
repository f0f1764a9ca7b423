// Package memlock sums the kernel memory of loaded BPF maps and programs.
package memlock
