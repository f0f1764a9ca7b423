//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// steer: cgroup/connect4 rewrites a pod's outbound TCP connects toward a
// proxy and records the original destination; sock_ops re-keys that record
// by the connection's 4-tuple once it is established; cgroup/getsockopt
// answers SO_ORIGINAL_DST on the proxy's accepted socket from it.

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define SOCK_STREAM 1
#define AF_INET 2
#define SOL_IP 0
#define SO_ORIGINAL_DST 80

// Counter indexes; keep in sync with counterNames in steer_linux.go.
enum {
	CNT_REWRITES = 0,
	CNT_SKIPPED_UID,
	CNT_SKIPPED_DST,
	CNT_TUPLES,
	CNT_GETSOCKOPT_HITS,
	CNT_GETSOCKOPT_MISSES,
	CNT_MAX,
};

// Set by the loader before the program is loaded.
volatile const __u32 proxy_ip4 = 0;	// network order
volatile const __u16 proxy_port = 0;	// host order
volatile const __u32 skip_uid = 0;	// the proxies' uid (package uids)
volatile const __u8 filter_ports = 0;	// 1: only ports in meshed_ports

struct orig_dst {
	__u32 ip4;	// network order
	__u16 port;	// host order
	__u16 pad;
};

// A connection as its client sees it: ips network order, ports host order.
struct tuple {
	__u32 sip;
	__u32 dip;
	__u16 sport;
	__u16 dport;
};

struct lpm_key {
	__u32 prefixlen;
	__u32 ip4;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 64);
	__type(key, struct lpm_key);
	__type(value, __u8);
} meshed_cidrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u16);
	__type(value, __u8);
} meshed_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct orig_dst);
} orig_by_cookie SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tuple);
	__type(value, struct orig_dst);
} orig_by_tuple SEC(".maps");

#include "counters.h"

SEC("cgroup/connect4")
int steer_connect4(struct bpf_sock_addr *ctx)
{
	if (ctx->type != SOCK_STREAM)
		return 1;
	if ((__u32)bpf_get_current_uid_gid() == skip_uid) {
		count(CNT_SKIPPED_UID);
		return 1;
	}

	__u32 dip = ctx->user_ip4;
	__u16 dport = bpf_ntohs((__u16)ctx->user_port);
	struct lpm_key k = { .prefixlen = 32, .ip4 = dip };
	if (!bpf_map_lookup_elem(&meshed_cidrs, &k) ||
	    (dip == proxy_ip4 && dport == proxy_port) ||
	    (filter_ports && !bpf_map_lookup_elem(&meshed_ports, &dport))) {
		count(CNT_SKIPPED_DST);
		return 1;
	}

	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct orig_dst od = { .ip4 = dip, .port = dport };
	bpf_map_update_elem(&orig_by_cookie, &cookie, &od, BPF_ANY);

	ctx->user_ip4 = proxy_ip4;
	ctx->user_port = bpf_htons(proxy_port);
	count(CNT_REWRITES);
	return 1;
}

SEC("sockops")
int steer_sockops(struct bpf_sock_ops *skops)
{
	if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB ||
	    skops->family != AF_INET)
		return 1;

	__u64 cookie = bpf_get_socket_cookie(skops);
	struct orig_dst *od = bpf_map_lookup_elem(&orig_by_cookie, &cookie);
	if (!od)
		return 1;

	struct tuple t = {
		.sip = skops->local_ip4,
		.dip = skops->remote_ip4,
		.sport = (__u16)skops->local_port,
		.dport = (__u16)bpf_ntohl(skops->remote_port),
	};
	struct orig_dst v = *od;
	bpf_map_update_elem(&orig_by_tuple, &t, &v, BPF_ANY);
	bpf_map_delete_elem(&orig_by_cookie, &cookie);
	count(CNT_TUPLES);
	return 1;
}

SEC("cgroup/getsockopt")
int steer_getsockopt(struct bpf_sockopt *ctx)
{
	if (ctx->level != SOL_IP || ctx->optname != SO_ORIGINAL_DST)
		return 1;

	struct bpf_sock *sk = ctx->sk;
	if (!sk)
		return 1;

	// The proxy's accepted socket is the client's connection reversed.
	struct tuple t = {
		.sip = sk->dst_ip4,
		.dip = sk->src_ip4,
		.sport = bpf_ntohs(sk->dst_port),
		.dport = (__u16)sk->src_port,
	};
	struct orig_dst *od = bpf_map_lookup_elem(&orig_by_tuple, &t);
	if (!od) {
		count(CNT_GETSOCKOPT_MISSES);
		return 1;
	}

	struct sockaddr_in *sa = ctx->optval;
	if ((void *)(sa + 1) > ctx->optval_end) {
		count(CNT_GETSOCKOPT_MISSES);
		return 1;
	}
	sa->sin_family = AF_INET;
	sa->sin_port = bpf_htons(od->port);
	sa->sin_addr.s_addr = od->ip4;
	__builtin_memset(sa->sin_zero, 0, sizeof(sa->sin_zero));

	// Two separate 32-bit stores: clang may merge adjacent writes into one
	// 8-byte store, which the verifier rejects for this context.
	*(volatile __s32 *)&ctx->optlen = sizeof(*sa);
	*(volatile __s32 *)&ctx->retval = 0;
	count(CNT_GETSOCKOPT_HITS);
	return 1;
}

char __license[] SEC("license") = "Dual BSD/GPL";
