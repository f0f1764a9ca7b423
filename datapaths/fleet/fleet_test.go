package fleet

import (
	"slices"
	"testing"

	"github.com/meshbench/meshbench/datapaths/controlplane"
	"github.com/meshbench/meshbench/datapaths/proxy"
)

// TestNoteEngine checks that the fleet keeps each proxy's engine figures
// and notes as last read, and merges them over the proxies: notes distinct
// and sorted, times and tallies their maximum, counts summed.
func TestNoteEngine(t *testing.T) {
	reading := func(restarts int64, notes ...string) proxy.Reading {
		return proxy.Reading{
			Counters: map[string]int64{
				"listener.outbound.rq_total":                           10,
				proxy.EngineCounterPrefix + "haproxy_restarts":         restarts,
				proxy.EngineCounterPrefix + "haproxy_unrendered_notes": int64(len(notes)),
			},
			Notes: notes,
		}
	}
	tests := []struct {
		name  string
		reads func(f *Fleet)
		notes []string
		// restarts and unrendered are the merged engine figures.
		restarts, unrendered float64
	}{
		{
			name:  "no read: no notes",
			reads: func(*Fleet) {},
		},
		{
			name: "two proxies: their notes merged, distinct and sorted",
			reads: func(f *Fleet) {
				f.NoteEngine("pod-a", reading(1, "cluster b: max_retries has no equivalent", "cluster a: Maglev is a hash ring"))
				f.NoteEngine("pod-b", reading(2, "cluster a: Maglev is a hash ring"))
			},
			notes:    []string{"cluster a: Maglev is a hash ring", "cluster b: max_retries has no equivalent"},
			restarts: 3, unrendered: 2,
		},
		{
			name: "a proxy read again: its last read counts",
			reads: func(f *Fleet) {
				f.NoteEngine("pod-a", reading(1, "cluster a: Maglev is a hash ring", "cluster c: path matches are not rendered"))
				f.NoteEngine("pod-b", reading(0, "cluster a: Maglev is a hash ring"))
				f.NoteEngine("pod-a", reading(4))
			},
			notes:    []string{"cluster a: Maglev is a hash ring"},
			restarts: 4, unrendered: 1,
		},
		{
			name: "an engine without figures or notes (builtin)",
			reads: func(f *Fleet) {
				f.NoteEngine("node-0", proxy.Reading{Counters: map[string]int64{"listener.outbound.rq_total": 3}})
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &Fleet{Session: &controlplane.Session{}}
			tc.reads(f)
			if got := f.Notes(); !slices.Equal(got, tc.notes) {
				t.Errorf("notes %q, want %q", got, tc.notes)
			}
			m := f.Metrics()
			if m["haproxy_restarts"] != tc.restarts || m["haproxy_unrendered_notes"] != tc.unrendered {
				t.Errorf("metrics %v: want haproxy_restarts %v, haproxy_unrendered_notes %v", m, tc.restarts, tc.unrendered)
			}
		})
	}
}

// TestNotesNilFleet checks that a fleet never started has no notes.
func TestNotesNilFleet(t *testing.T) {
	var f *Fleet
	if got := f.Notes(); got != nil {
		t.Errorf("nil fleet: notes %q", got)
	}
}
