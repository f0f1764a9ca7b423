package chaos

import (
	"slices"
	"testing"

	"github.com/meshbench/meshbench/harness/results"
)

// win builds 1 s windows from (requests, successes, p99) triples.
func win(v ...[3]float64) []results.Window {
	out := make([]results.Window, len(v))
	for i, x := range v {
		r, s := int64(x[0]), int64(x[1])
		ratio := 0.0
		if r > 0 {
			ratio = float64(s) / float64(r)
		}
		out[i] = results.Window{StartS: float64(i), Requests: r, Successes: s, SuccessRatio: ratio, P99US: x[2]}
	}
	return out
}

func TestAnalyze(t *testing.T) {
	ok := [3]float64{100, 100, 100}
	tests := []struct {
		name     string
		windows  []results.Window
		fault    results.FaultRecord
		errors   int64
		detect   float64
		recovery float64
	}{
		{
			name:    "kill detected and recovered",
			windows: win(ok, ok, [3]float64{100, 60, 150}, [3]float64{100, 90, 150}, ok, ok),
			fault:   results.FaultRecord{StartS: 2, EndS: 3.5},
			errors:  50, detect: 0, recovery: 0.5,
		},
		{
			name:    "errors start one window late",
			windows: win(ok, ok, ok, [3]float64{100, 50, 100}, ok, ok),
			fault:   results.FaultRecord{StartS: 2.25, EndS: 3.5},
			errors:  50, detect: 0.75, recovery: 0.5,
		},
		{
			name:    "delay without errors: p99 must come back within 2x",
			windows: win(ok, ok, [3]float64{100, 100, 20000}, [3]float64{100, 100, 20000}, [3]float64{100, 100, 250}, [3]float64{100, 100, 180}),
			fault:   results.FaultRecord{StartS: 2, EndS: 4},
			errors:  0, detect: -1, recovery: 1,
		},
		{
			name:    "never recovers",
			windows: win(ok, [3]float64{100, 10, 100}, [3]float64{100, 10, 100}, [3]float64{100, 98, 100}),
			fault:   results.FaultRecord{StartS: 1, EndS: 2},
			errors:  182, detect: 0, recovery: -1,
		},
		{
			name:    "fault never ended",
			windows: win(ok, [3]float64{100, 0, 0}, ok),
			fault:   results.FaultRecord{StartS: 1, EndS: -1},
			errors:  100, detect: 0, recovery: -1,
		},
		{
			name:    "fault never injected",
			windows: win(ok, ok),
			fault:   results.FaultRecord{StartS: -1, EndS: -1},
			errors:  0, detect: -1, recovery: -1,
		},
		{
			name:    "no baseline: success ratio alone",
			windows: win([3]float64{100, 50, 900}, [3]float64{100, 100, 900}),
			fault:   results.FaultRecord{StartS: 0, EndS: 1},
			errors:  50, detect: 0, recovery: 0,
		},
		{
			name:    "empty windows are skipped for recovery",
			windows: win(ok, [3]float64{100, 0, 0}, [3]float64{0, 0, 0}, ok),
			fault:   results.FaultRecord{StartS: 1, EndS: 2},
			errors:  100, detect: 0, recovery: 1,
		},
		{
			name:    "errors before the fault do not count",
			windows: win([3]float64{100, 50, 100}, ok, ok, ok),
			fault:   results.FaultRecord{StartS: 1, EndS: 2},
			errors:  0, detect: -1, recovery: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []results.FaultRecord{tt.fault}
			got := Analyze(tt.windows, in)[0]
			if got.Errors != tt.errors || got.DetectS != tt.detect || got.RecoverS != tt.recovery {
				t.Errorf("errors %d detect %v recover %v, want %d %v %v", got.Errors, got.DetectS, got.RecoverS, tt.errors, tt.detect, tt.recovery)
			}
			if in[0].RecoverS != tt.fault.RecoverS || in[0].Errors != tt.fault.Errors {
				t.Error("Analyze modified its argument")
			}
		})
	}
}

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestActive(t *testing.T) {
	faults := []results.FaultRecord{
		{Name: "a", StartS: 1.5, EndS: 3},
		{Name: "b", StartS: 2, EndS: -1},
		{Name: "never", StartS: -1, EndS: -1},
	}
	for _, tt := range []struct {
		start float64
		want  []string
	}{{0, nil}, {1, []string{"a"}}, {2, []string{"a", "b"}}, {3, []string{"b"}}, {9, []string{"b"}}} {
		if got := Active(tt.start, 1, faults); !slices.Equal(got, tt.want) {
			t.Errorf("Active(%v) = %v, want %v", tt.start, got, tt.want)
		}
	}
}
