//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// xdp: on each meshed pod's host-side veth, redirect the pod's IPv4 TCP and
// UDP packets toward pods and service VIPs into the AF_XDP socket bound to that
// veth; pass everything else (ARP, ICMP, fragments, other destinations) to
// the kernel.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// Counter indexes; keep in sync with counterNames in xdp_linux.go.
enum {
	CNT_SEEN = 0,
	CNT_REDIRECTED,
	CNT_PASSED,
	CNT_NO_SOCKET,
	CNT_MAX,
};

struct lpm_key {
	__u32 prefixlen;
	__u32 ip4; // network order
};

// Destinations: the longest matching prefix's value says whether packets
// to it are redirected (1) or passed to the kernel (0); no match passes.
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_key);
	__type(value, __u32);
} dsts SEC(".maps");

// XSKMAP slot of each attached interface, keyed by ifindex.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} slots SEC(".maps");

// AF_XDP sockets by slot.
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

#include "counters.h"

SEC("xdp")
int xdp_redirect_pod(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	__u32 ifindex, *slot, *redirect;
	struct lpm_key key;

	count(CNT_SEEN);
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		goto pass;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->ihl != 5)
		goto pass;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		goto pass;
	// Fragments carry no ports (or only the first does): leave them to the kernel.
	if (ip->frag_off & bpf_htons(0x3fff))
		goto pass;
	key.prefixlen = 32;
	key.ip4 = ip->daddr;
	redirect = bpf_map_lookup_elem(&dsts, &key);
	if (!redirect || !*redirect)
		goto pass;
	ifindex = ctx->ingress_ifindex;
	slot = bpf_map_lookup_elem(&slots, &ifindex);
	if (!slot)
		goto pass;
	if (bpf_redirect_map(&xsks, *slot, XDP_PASS) == XDP_REDIRECT) {
		count(CNT_REDIRECTED);
		return XDP_REDIRECT;
	}
	count(CNT_NO_SOCKET);
	return XDP_PASS;
pass:
	count(CNT_PASSED);
	return XDP_PASS;
}

char __license[] SEC("license") = "Dual BSD/GPL";
