package kubeenv

import (
	"net/netip"
	"testing"
)

// TestAddressPlan checks that every range the environment hands out is in
// 198.18.0.0/15 and apart from the embedded testbed's.
func TestAddressPlan(t *testing.T) {
	bench := netip.MustParsePrefix("198.18.0.0/15")
	testbed := []netip.Prefix{
		netip.MustParsePrefix("198.18.0.0/20"),   // pods 198.18.N.0/24, N = 0..15
		netip.MustParsePrefix("198.19.0.0/24"),   // fabric
		netip.MustParsePrefix("198.19.128.0/17"), // service VIPs
	}
	ranges := map[string]netip.Prefix{
		"cluster":  ClusterCIDR,
		"services": ServiceCIDR,
		"nodes":    NodeCIDR,
	}
	for i := range MaxNodes {
		ranges["node pods "+NodeName(i)] = NodePodCIDR(i)
		ranges["kwok pods "+KwokNodeName(i)] = kwokPodCIDR(i)
		ranges["node "+NodeName(i)] = netip.PrefixFrom(NodeIP(i), 32)
	}
	for _, a := range []netip.Addr{APIServerServiceIP, fabricIP, kwokNodeIP} {
		ranges["address "+a.String()] = netip.PrefixFrom(a, 32)
	}
	for name, p := range ranges {
		t.Run(name, func(t *testing.T) {
			if !bench.Contains(p.Addr()) || p.Bits() < bench.Bits() {
				t.Errorf("%s outside %s", p, bench)
			}
			for _, tb := range testbed {
				if tb.Overlaps(p) {
					t.Errorf("%s overlaps the embedded testbed's %s", p, tb)
				}
			}
		})
	}
	for i := range MaxNodes {
		if !ClusterCIDR.Contains(NodePodCIDR(i).Addr()) || !ClusterCIDR.Contains(kwokPodCIDR(i).Addr()) {
			t.Errorf("pod ranges of node %d outside the cluster range %s", i, ClusterCIDR)
		}
		if NodePodCIDR(i).Overlaps(kwokPodCIDR(i)) || !NodeCIDR.Contains(NodeIP(i)) {
			t.Errorf("node %d: overlapping pod ranges or address outside %s", i, NodeCIDR)
		}
	}
	if !ServiceCIDR.Contains(APIServerServiceIP) {
		t.Errorf("%s outside %s", APIServerServiceIP, ServiceCIDR)
	}
}

func TestHostStateDiff(t *testing.T) {
	for _, tc := range []struct {
		name          string
		before, after map[string][]string
		want          []string
	}{
		{"equal", map[string][]string{"a": {"x", "y"}}, map[string][]string{"a": {"x", "y"}}, nil},
		{"added and removed", map[string][]string{"a": {"x", "y"}}, map[string][]string{"a": {"y", "z"}}, []string{"a: - x", "a: + z"}},
		{"new section", map[string][]string{}, map[string][]string{"b": {"q"}}, []string{"b: + q"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := HostState{tc.before}.Diff(HostState{tc.after})
			if len(got) != len(tc.want) {
				t.Fatalf("diff %q, want %q", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("diff %q, want %q", got, tc.want)
				}
			}
		})
	}
}
