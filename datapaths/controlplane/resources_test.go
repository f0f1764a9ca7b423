package controlplane

import (
	"encoding/json"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/meshbench/meshbench/internal/golden"
)

func sampleModel() Model {
	ip := netip.MustParseAddr
	return Model{
		Proxies: []string{"sidecar~pod-a", "nodeproxy~node-1"},
		Services: []Service{
			{
				Name: "echo", Port: 8080, VIP: ip("198.19.128.1"), Protocol: HTTP, LBPolicy: LeastRequest,
				CircuitBreakers: CircuitBreakers{MaxConnections: 100, MaxPendingRequests: 10, MaxRequests: 200, MaxRetries: 5},
				Retries:         RetryPolicy{Attempts: 2, PerTryTimeout: 250 * time.Millisecond},
				Timeout:         2 * time.Second,
				Endpoints: []Endpoint{
					{Pod: "pod-b", IP: ip("198.18.1.2"), Port: 8080, Healthy: true},
					{Pod: "pod-a", IP: ip("198.18.0.2"), Port: 8080, Healthy: true},
					{Pod: "pod-c", IP: ip("198.18.1.3"), Port: 8080, Healthy: false},
				},
			},
			{
				Name: "users", Port: 9090, VIP: ip("198.19.128.2"), LBPolicy: Maglev, HashHeader: "x-user",
				Endpoints: []Endpoint{{Pod: "pod-b", IP: ip("198.18.1.2"), Port: 9090, Healthy: true}},
			},
			{
				Name: "db", Port: 5432, VIP: ip("198.19.128.3"), Protocol: TCP, LBPolicy: Random,
				Endpoints: []Endpoint{{Pod: "pod-a", IP: ip("198.18.0.2"), Port: 5432, Healthy: true}},
			},
		},
	}
}

// render is a stable JSON form of a proxy's resources.
func render(t *testing.T, m Model, node string) []byte {
	t.Helper()
	snap, err := Snapshot(&m, node, "v1")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]any{}
	for _, typ := range []string{resource.ListenerType, resource.RouteType, resource.ClusterType, resource.EndpointType} {
		res := snap.GetResources(typ)
		names := make([]string, 0, len(res))
		for n := range res {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			b, err := protojson.Marshal(res[n])
			if err != nil {
				t.Fatal(err)
			}
			var v any
			if err := json.Unmarshal(b, &v); err != nil {
				t.Fatal(err)
			}
			out[typ[strings.LastIndex(typ, ".")+1:]] = append(out[typ[strings.LastIndex(typ, ".")+1:]], v)
		}
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func TestSnapshotGolden(t *testing.T) {
	for _, node := range []string{"sidecar~pod-a", "nodeproxy~node-1"} {
		t.Run(node, func(t *testing.T) {
			path := filepath.Join("testdata", strings.ReplaceAll(node, "~", "_")+".golden.json")
			golden.Check(t, path, render(t, sampleModel(), node))
		})
	}
}

func TestSnapshotValid(t *testing.T) {
	big := Model{}
	for s := 0; s < 5; s++ {
		svc := Service{Name: "svc-" + string(rune('a'+s)), Port: 8000 + s, VIP: netip.AddrFrom4([4]byte{198, 19, 128, byte(s + 1)}),
			LBPolicy: []LBPolicy{RoundRobin, LeastRequest, Maglev, Random, RingHash}[s]}
		if s%2 == 1 {
			svc.Protocol = TCP
		}
		for e := 0; e < 200; e++ {
			svc.Endpoints = append(svc.Endpoints, Endpoint{Pod: "p", IP: netip.AddrFrom4([4]byte{198, 18, byte(e / 250), byte(e%250 + 1)}), Port: 8000 + s, Healthy: true})
		}
		big.Services = append(big.Services, svc)
	}
	for _, tc := range []struct {
		name string
		m    Model
	}{
		{"empty", Model{}},
		{"sample", sampleModel()},
		{"service without endpoints or VIP", Model{Services: []Service{{Name: "lonely", Port: 80}}}},
		{"five services, 1000 endpoints", big},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, node := range []string{"sidecar~pod-a", "nodeproxy~n"} {
				if _, err := Snapshot(&tc.m, node, "v1"); err != nil {
					t.Errorf("%s: %v", node, err)
				}
			}
		})
	}
}

func TestModelInvalid(t *testing.T) {
	ip := netip.MustParseAddr("198.18.0.2")
	for _, tc := range []struct {
		name string
		svc  Service
		want string
	}{
		{"bad name", Service{Name: "Echo_1", Port: 80}, "invalid name"},
		{"bad port", Service{Name: "a", Port: 0}, "out of range"},
		{"bad policy", Service{Name: "a", Port: 80, LBPolicy: "FASTEST"}, "unknown lb policy"},
		{"bad protocol", Service{Name: "a", Port: 80, Protocol: "udp"}, "unknown protocol"},
		{"bad endpoint", Service{Name: "a", Port: 80, Endpoints: []Endpoint{{IP: ip, Port: 70000}}}, "out of range"},
		{"ipv6 VIP", Service{Name: "a", Port: 80, VIP: netip.MustParseAddr("2001:db8::1")}, "not IPv4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := Model{Services: []Service{tc.svc}}
			err := m.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
