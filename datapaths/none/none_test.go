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
	w := func(successes, failures int64) datapaths.Work {
		return datapaths.Work{Successes: successes, Timeouts: failures, Slack: 12, SlackWhy: "test"}
	}
	tests := []struct {
		name           string
		served, direct int64
		work           datapaths.Work
		want           bool
	}{
		{"exact", 1000, 1000, w(1000, 0), true},
		{"in flight at the edges", 1012, 1012, w(1000, 0), true},
		{"beyond the edges", 1013, 1013, w(1000, 0), false},
		{"failures answered after the client gave up", 1050, 1050, w(1000, 50), true},
		{"nothing served", 0, 0, w(1000, 0), false},
		{"served elsewhere", 500, 500, w(1000, 0), false},
		{"a proxy in between", 1000, 0, w(1000, 0), false},
		{"one request through something else", 1000, 999, w(1000, 0), false},
		{"no successes", 0, 0, w(0, 0), false},
	}
	d := New()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := datapaths.Prove(d.ProofSource(), d.Verify, map[string]int64{"echo_requests": tt.served, "echo_from_client": tt.direct}, tt.work)
			if p.Verified != tt.want {
				t.Errorf("proof of %d served (%d direct), %+v = %v (%s), want %v", tt.served, tt.direct, tt.work, p.Verified, p.Detail, tt.want)
			}
		})
	}
}
