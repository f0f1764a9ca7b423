//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// sockmap: sock_ops puts every established TCP socket whose two ends are in
// the same pod (loopback, or the pod's own address on both ends) into a
// sockhash keyed by its 4-tuple; sk_msg, attached to that sockhash, sends
// each message straight to the peer socket's receive queue with
// bpf_msg_redirect_hash, so app<->sidecar bytes skip the loopback TCP stack.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2

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
// order, s = local end, d = remote end.
struct sock_key {
	__u32 sip;
	__u32 dip;
	__u16 sport;
	__u16 dport;
};

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct sock_key);
	__type(value, __u32);
} sock_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void add(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		*v += n;
}

static __always_inline int loopback(__u32 ip4)
{
	return (bpf_ntohl(ip4) >> 24) == 127;
}

SEC("sockops")
int sockmap_sockops(struct bpf_sock_ops *skops)
{
	if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB &&
	    skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	if (skops->family != AF_INET)
		return 1;

	__u32 lip = skops->local_ip4, rip = skops->remote_ip4;
	if (!(loopback(lip) && loopback(rip)) && lip != rip)
		return 1;

	struct sock_key k = {
		.sip = lip,
		.dip = rip,
		.sport = (__u16)skops->local_port,
		// remote_port: network order in the high 16 bits.
		.dport = (__u16)bpf_ntohl(skops->remote_port),
	};
	if (bpf_sock_hash_update(skops, &sock_hash, &k, BPF_ANY) == 0)
		add(CNT_INSERTED, 1);
	else
		add(CNT_INSERT_ERRORS, 1);
	return 1;
}

SEC("sk_msg")
int sockmap_redirect(struct sk_msg_md *msg)
{
	// The peer socket sees the connection reversed.
	struct sock_key k = {
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
