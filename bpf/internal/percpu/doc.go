// Package percpu reads the programs' counter maps: per-CPU arrays of
// 64-bit counters, one slot per counter, summed over CPUs.
package percpu
