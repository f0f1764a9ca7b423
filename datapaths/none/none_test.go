package none

import (
	"net/netip"
	"testing"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/harness/testbed"
)

func TestTargetIsBackends(t *testing.T) {
	svc := &datapaths.Service{Name: "echo", Port: 8080, Backends: []*testbed.Pod{
		{Name: "a", IP: netip.MustParseAddr("198.18.1.10")},
		{Name: "b", IP: netip.MustParseAddr("198.18.0.11")},
	}}
	got := New().Target(svc)
	want := []netip.AddrPort{netip.MustParseAddrPort("198.18.1.10:8080"), netip.MustParseAddrPort("198.18.0.11:8080")}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("Target = %v, want %v", got, want)
	}
}

func TestVerify(t *testing.T) {
	tests := []struct {
		name              string
		served, successes int64
		want              bool
	}{
		{"exact", 1000, 1000, true},
		{"in flight at the edges", 1012, 1000, true},
		{"nothing served", 0, 1000, false},
		{"served elsewhere", 500, 1000, false},
		{"no successes", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, detail := New().Verify(map[string]int64{"echo_requests": tt.served}, tt.successes)
			if ok != tt.want {
				t.Errorf("Verify(%d served, %d successes) = %v (%s), want %v", tt.served, tt.successes, ok, detail, tt.want)
			}
		})
	}
}
