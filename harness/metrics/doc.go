// Package metrics reads the CPU, memory and kernel counters of the testbed's
// processes and network namespaces, and diffs snapshots of them.
package metrics
