package controlplane

import (
	"net/netip"
	"testing"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/harness/testbed"
)

func TestModelFromServices(t *testing.T) {
	a := &testbed.Pod{Name: "pod-a", IP: netip.MustParseAddr("198.18.0.2")}
	b := &testbed.Pod{Name: "pod-b", IP: netip.MustParseAddr("198.18.1.2")}
	svcs := []*datapaths.Service{{Name: "echo", Port: 8080, VIP: netip.MustParseAddr("198.19.128.1"), Backends: []*testbed.Pod{a, b}}}
	m := ModelFromServices(svcs, Service{LBPolicy: Maglev, Retries: RetryPolicy{Attempts: 1}}, []string{SidecarNodeID("pod-a")})
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	s := m.Services[0]
	if s.Name != "echo" || s.LBPolicy != Maglev || len(s.Endpoints) != 2 || s.Endpoints[1].IP != b.IP || !s.Endpoints[1].Healthy {
		t.Errorf("model %+v", m)
	}
	killed := m.WithPodHealth("pod-b", false)
	if killed.Services[0].Endpoints[1].Healthy || !m.Services[0].Endpoints[1].Healthy {
		t.Error("WithPodHealth changed the wrong model")
	}
	if _, err := Snapshot(&killed, SidecarNodeID("pod-a"), "v1"); err != nil {
		t.Fatal(err)
	}
}
