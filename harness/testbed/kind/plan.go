package kind

import (
	"fmt"
	"net/netip"
	"regexp"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
)

// The address plan. Every address a kind cluster of meshbench's uses is
// inside Benchmark (198.18.0.0/15, RFC 2544, reserved for network
// benchmarks), apart from the embedded testbed's ranges (pods
// 198.18.0.0/20, fabric 198.19.0.0/24, service VIPs 198.19.128.0/17) and
// the test Kubernetes nodes' (198.19.1.0/24). Never 10/8, 172.16/12,
// 192.168/16 or public addresses: kind's defaults (a docker network from
// docker's pool, pods 10.244.0.0/16, Services 10.96.0.0/16) are all
// replaced. The one exception is the API server's port on the host, which
// kind publishes on 127.0.0.1 (APIServerAddress).
var (
	// Benchmark is the range every address is taken from.
	Benchmark = netip.MustParsePrefix("198.18.0.0/15")
	// PodSubnet holds every pod address (kube-controller-manager gives
	// each node a /24 of it).
	PodSubnet = netip.MustParsePrefix("198.18.128.0/17")
	// ServiceSubnet is the Services' ClusterIP range (the "kubernetes"
	// Service is its first address, CoreDNS its tenth).
	ServiceSubnet = netip.MustParsePrefix("198.19.64.0/18")
	// NodeSubnets holds the docker networks the nodes are attached to,
	// one /24 per cluster (see NodeSubnet).
	NodeSubnets = netip.MustParsePrefix("198.19.0.0/18")
	// APIServerAddress is where kind publishes the API server on the
	// host: loopback only.
	APIServerAddress = netip.MustParseAddr("127.0.0.1")
)

// MaxNetworks is how many clusters (runs, or clusters kept with Retain)
// can exist at once: each takes one NodeSubnet.
const MaxNetworks = 16

// NodeSubnet returns the i-th subnet a cluster's docker network may take,
// 198.19.(2+i).0/24 for i in [0, MaxNetworks): the first no other docker
// network overlaps is taken. Its first address is the gateway (the
// bridge's address on the host); docker gives the nodes the next ones.
func NodeSubnet(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(2 + i), 0}), 24)
}

// Gateway returns the gateway of a node subnet: its first address.
func Gateway(subnet netip.Prefix) netip.Addr { return subnet.Masked().Addr().Next() }

// runIDRe is the kube provider's run id: lower-case hex digits, at most
// 16, so that a cluster's name stays within kind's limits (below).
var runIDRe = regexp.MustCompile(`^[0-9a-f]{1,16}$`)

// maxNameLen is kind's advice for cluster names (its nodes' host names
// add "-control-plane", and host names stop at 64 characters).
const maxNameLen = 50

// ClusterName returns the name of the run's kind cluster, which is also
// its docker network's: meshbench-<runID>. kind wants ^[a-z0-9.-]+$ and
// at most 50 characters; run ids are 1 to 16 lower-case hex digits, so
// names are at most 26.
func ClusterName(runID string) (string, error) {
	if !runIDRe.MatchString(runID) {
		return "", fmt.Errorf("kind: run id %q: want 1 to 16 lower-case hex digits", runID)
	}
	return namePrefix + runID, nil
}

const namePrefix = "meshbench-"

// ImageRef is the name the run's meshbench image is loaded under.
func ImageRef(runID string) string { return "meshbench.local/meshbench:" + runID }

// Config returns the kind configuration of a cluster of nodes nodes
// usable by pods: one control-plane node for one (kind removes its
// NoSchedule taint when it is alone), else a control plane (tainted, so
// the kube provider leaves it out) and nodes workers. Networking follows
// the address plan: IPv4 only, pods in PodSubnet, Services in
// ServiceSubnet, the API server published on loopback, kube-proxy in
// iptables mode. nodeImage, when set, is every node's image (default:
// kind's).
func Config(name string, nodes int, nodeImage string) *v1alpha4.Cluster {
	cfg := &v1alpha4.Cluster{
		TypeMeta: v1alpha4.TypeMeta{Kind: "Cluster", APIVersion: "kind.x-k8s.io/v1alpha4"},
		Name:     name,
		Nodes:    []v1alpha4.Node{{Role: v1alpha4.ControlPlaneRole, Image: nodeImage}},
		Networking: v1alpha4.Networking{
			IPFamily:         v1alpha4.IPv4Family,
			APIServerAddress: APIServerAddress.String(),
			PodSubnet:        PodSubnet.String(),
			ServiceSubnet:    ServiceSubnet.String(),
			KubeProxyMode:    v1alpha4.IPTablesProxyMode,
		},
	}
	if nodes >= 2 {
		for range nodes {
			cfg.Nodes = append(cfg.Nodes, v1alpha4.Node{Role: v1alpha4.WorkerRole, Image: nodeImage})
		}
	}
	return cfg
}

// clusterNodes is how many nodes Config makes for nodes usable ones.
func clusterNodes(nodes int) int {
	if nodes >= 2 {
		return nodes + 1
	}
	return 1
}
