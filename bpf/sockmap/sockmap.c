//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// sockmap: sock_ops puts every established TCP socket whose two ends are in
// the same pod (loopback, or the pod's own address on both ends; IPv4, or
// IPv4-mapped on a dual-stack socket) into a sockhash keyed by its 4-tuple; sk_msg, attached to that sockhash, sends
// each message straight to the peer socket's receive queue with
// bpf_msg_redirect_hash, so app<->sidecar bytes skip the loopback TCP stack.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10

// Counter indexes; keep in sync with counterNames in sockmap_linux.go.
enum {
	CNT_INSERTED = 0,
	CNT_INSERT_ERRORS,
	CNT_REDIRECTS,
	CNT_REDIRECT_MISSES,
	CNT_BYTES,
	CNT_MAX,
};

// A socket's own view of its connection: ips network order, ports host
// order, s = local end, d = remote end. The network namespace is part of the
// key: loopback connections in two pods can have the same 4-tuple, and one
// pod's socket must never replace, or receive the bytes of, another's.
struct sock_key {
	__u64 netns;
	__u32 sip;
	__u32 dip;
	__u16 sport;
	__u16 dport;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct sock_key);
	__type(value, __u32);
} sock_hash SEC(".maps");

#include "counters.h"

// Ports whose connections are never spliced (host order, 0 = unused): the
// harness's own admin endpoints in the pod (proxy /stats, echo /stats),
// which it reads from outside the pod's cgroup, so their peers could never
// be in the sockhash and every reply would count as a miss.
volatile const __u16 ignore_ports[4] = {0, 0, 0, 0};

static __always_inline int loopback(__u32 ip4)
{
	return (bpf_ntohl(ip4) >> 24) == 127;
}

static __always_inline int ignored(__u16 port)
{
	if (port == 0)
		return 0;
#pragma unroll
	for (int i = 0; i < 4; i++)
		if (ignore_ports[i] == port)
			return 1;
	return 0;
}

// v4mapped says whether an IPv6 address (network order words) is an
// IPv4-mapped one, ::ffff:a.b.c.d.
static __always_inline int v4mapped(__u32 w0, __u32 w1, __u32 w2)
{
	return w0 == 0 && w1 == 0 && w2 == bpf_htonl(0x0000ffff);
}

SEC("sockops")
int sockmap_sockops(struct bpf_sock_ops *skops)
{
	if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB &&
	    skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	// A dual-stack listener ([::]:port, what Go's net.Listen("tcp",
	// ":port") opens) accepts IPv4 connections as AF_INET6 sockets with
	// IPv4-mapped addresses. Their local_ip4/remote_ip4 hold the IPv4
	// addresses, so they take the same key as their AF_INET peer.
	if (skops->family == AF_INET6) {
		if (!v4mapped(skops->local_ip6[0], skops->local_ip6[1], skops->local_ip6[2]) ||
		    !v4mapped(skops->remote_ip6[0], skops->remote_ip6[1], skops->remote_ip6[2]))
			return 1;
	} else if (skops->family != AF_INET) {
		return 1;
	}

	__u32 lip = skops->local_ip4, rip = skops->remote_ip4;
	if (!(loopback(lip) && loopback(rip)) && lip != rip)
		return 1;

	struct sock_key k = {
		.netns = bpf_get_netns_cookie(skops),
		.sip = lip,
		.dip = rip,
		.sport = (__u16)skops->local_port,
		// remote_port: network order in the high 16 bits.
		.dport = (__u16)bpf_ntohl(skops->remote_port),
	};
	if (ignored(k.sport) || ignored(k.dport))
		return 1;
	if (bpf_sock_hash_update(skops, &sock_hash, &k, BPF_ANY) == 0)
		add(CNT_INSERTED, 1);
	else
		add(CNT_INSERT_ERRORS, 1);
	return 1;
}

SEC("sk_msg")
int sockmap_redirect(struct sk_msg_md *msg)
{
	// The peer socket, in the same namespace, sees the connection reversed.
	struct sock_key k = {
		.netns = bpf_get_netns_cookie(msg),
		.sip = msg->remote_ip4,
		.dip = msg->local_ip4,
		.sport = (__u16)bpf_ntohl(msg->remote_port),
		.dport = (__u16)msg->local_port,
	};
	__u64 size = msg->size;
	if (bpf_msg_redirect_hash(msg, &sock_hash, &k, BPF_F_INGRESS) == SK_PASS) {
		add(CNT_REDIRECTS, 1);
		add(CNT_BYTES, size);
	} else {
		add(CNT_REDIRECT_MISSES, 1);
	}
	// SK_PASS without a redirect target sends the message the normal way.
	return SK_PASS;
}

char __license[] SEC("license") = "Dual BSD/GPL";
