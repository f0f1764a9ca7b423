package datapaths

import (
	"testing"

	"github.com/meshbench/meshbench/harness/results"
)

func TestDeliveredBytes(t *testing.T) {
	w := Work{Successes: 100, BytesSent: 10_000, Slack: 2, SlackWhy: "test"}
	tests := []struct {
		name  string
		delta map[string]int64
		ok    bool
	}{
		{"per endpoint, matching", map[string]int64{HopReceivedBytes + "b1": 6000, HopSentBytes + "b1": 6000, HopReceivedBytes + "b2": 4000, HopSentBytes + "b2": 4000}, true},
		{"per endpoint, one short", map[string]int64{HopReceivedBytes + "b1": 5000, HopSentBytes + "b1": 6000, HopReceivedBytes + "b2": 4000, HopSentBytes + "b2": 4000}, false},
		{"no sender counts, receivers read what the client wrote", map[string]int64{HopReceivedBytes + "b1": 6000, HopReceivedBytes + "b2": 4000}, true},
		// Envoy's view counts HTTP bytes only: receivers that read nothing
		// must not pass against a sender that counted nothing.
		{"no sender counts, receivers read nothing", map[string]int64{HopReceivedBytes + "b1": 0, HopReceivedBytes + "b2": 0}, false},
		{"no receivers", map[string]int64{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c := DeliveredBytes("backend sidecars", tt.delta, w); c.OK != tt.ok {
				t.Errorf("OK = %v, want %v: %+v", c.OK, tt.ok, c)
			}
		})
	}
}

// TestProveKeepsChangedCounters checks that a proof keeps the deltas that
// changed and leaves the zeros out, while its checks saw them all.
func TestProveKeepsChangedCounters(t *testing.T) {
	delta := map[string]int64{"a": 3, "b": 0, "c": -1}
	var seen int
	verify := func(d map[string]int64, _ Work) []results.ProofCheck {
		seen = len(d)
		return []results.ProofCheck{{Name: "x", OK: true}}
	}
	p := Prove("test", verify, delta, Work{Successes: 1})
	if seen != 3 {
		t.Errorf("the checks saw %d counters, want 3", seen)
	}
	if len(p.Counters) != 2 || p.Counters["a"] != 3 || p.Counters["c"] != -1 {
		t.Errorf("proof counters %v, want a=3 c=-1", p.Counters)
	}
	if !p.Verified {
		t.Errorf("proof not verified: %+v", p)
	}
}
