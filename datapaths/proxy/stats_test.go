package proxy

import (
	"net/netip"
	"testing"
)

// TestStatsLeaveOutIdleEndpoints checks that /stats lists only the
// endpoints that counted something.
func TestStatsLeaveOutIdleEndpoints(t *testing.T) {
	r := newRegistry()
	busy := netip.MustParseAddrPort("198.18.1.10:8080")
	idle := netip.MustParseAddrPort("198.18.1.11:8080")
	r.host("echo", busy).Rq2xx.Add(3)
	r.host("echo", idle)
	s := r.snapshot(nil)
	if len(s.Hosts["echo"]) != 1 || s.Hosts["echo"][busy.String()]["rq_2xx"] != 3 {
		t.Errorf("hosts %v, want only %s with rq_2xx 3", s.Hosts["echo"], busy)
	}
}
