package kubeenv

import (
	"fmt"
	"net/netip"
)

// The address plan. Every address the environment hands to any software is
// inside 198.18.0.0/15 (RFC 2544, reserved for network benchmarks) and
// apart from the embedded testbed's ranges (pods 198.18.0.0/20, fabric
// 198.19.0.0/24, service VIPs 198.19.128.0/17).
var (
	// ClusterCIDR holds every pod address: a /24 per node.
	ClusterCIDR = netip.MustParsePrefix("198.18.128.0/17")
	// ServiceCIDR is the Service ClusterIP range.
	ServiceCIDR = netip.MustParsePrefix("198.19.64.0/18")
	// NodeCIDR holds the nodes' addresses on the fabric that joins them.
	NodeCIDR = netip.MustParsePrefix("198.19.1.0/24")
	// APIServerServiceIP is the ClusterIP of the "kubernetes" Service.
	APIServerServiceIP = netip.MustParseAddr("198.19.64.1")
	// fabricIP is the fabric namespace's own address, from which the API
	// server's connections to kubelets and pods are made.
	fabricIP = netip.MustParseAddr("198.19.1.254")
	// kwokNodeIP is the address kwok reports for fake nodes.
	kwokNodeIP = netip.MustParseAddr("198.19.1.253")
)

// MaxNodes bounds real nodes (node i uses 198.19.1.(i+1) and
// 198.18.(128+i).0/24) and kwok nodes (198.18.(192+i).0/24) alike.
const MaxNodes = 32

// NodeIP returns real node i's address.
func NodeIP(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 19, 1, byte(i + 1)}) }

// NodePodCIDR returns real node i's pod range.
func NodePodCIDR(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(128 + i), 0}), 24)
}

// kwokPodCIDR returns kwok node i's pod range.
func kwokPodCIDR(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(192 + i), 0}), 24)
}

// checkIndex rejects node indexes outside the plan.
func checkIndex(i int) error {
	if i < 0 || i >= MaxNodes {
		return fmt.Errorf("node index %d: want 0 to %d", i, MaxNodes-1)
	}
	return nil
}
