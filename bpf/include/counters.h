// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// counters.h: a program family's counters, a per-CPU array of 64-bit
// counters with one slot per counter (the loaders sum them over CPUs with
// bpf/internal/percpu). Define CNT_MAX, the number of counters, before
// including it.

#ifndef MESHBENCH_COUNTERS_H
#define MESHBENCH_COUNTERS_H

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

// add adds n to counter idx.
static __always_inline void add(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		*v += n;
}

// count adds one to counter idx.
static __always_inline void count(__u32 idx)
{
	add(idx, 1);
}

#endif
