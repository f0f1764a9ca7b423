package chaos

import (
	"math"
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
			name:    "delay without errors: detected by p99, which must come back within 2x",
			windows: win(ok, ok, [3]float64{100, 100, 20000}, [3]float64{100, 100, 20000}, [3]float64{100, 100, 250}, [3]float64{100, 100, 180}),
			fault:   results.FaultRecord{StartS: 2, EndS: 4},
			errors:  0, detect: 0, recovery: 1,
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

// win100 builds 100 ms windows from (requests, successes, p99) triples.
func win100(v ...[3]float64) []results.Window {
	out := win(v...)
	for i := range out {
		out[i].StartS = float64(i) / 10
	}
	return out
}

func TestAnalyzeFineWindows(t *testing.T) {
	ok, bad := [3]float64{20, 20, 100}, [3]float64{20, 10, 100}
	// A kill at 0.3 s restarted at 0.6 s; one healthy window at 0.8 s is
	// not a recovery: the traffic stays healthy only from 1.0 s on.
	ws := win100(ok, ok, ok, ok, bad, bad, bad, bad, ok, bad, ok, ok, ok, ok, ok, ok, ok)
	got := Analyze(ws, []results.FaultRecord{{Name: "kill", StartS: 0.35, EndS: 0.6}})[0]
	if got.ResolutionS != 0.1 || got.Errors != 50 || !near(got.DetectS, 0.05) || !near(got.RecoverS, 0.4) {
		t.Errorf("resolution %v errors %d detect %v recover %v, want 0.1 50 0.05 0.4", got.ResolutionS, got.Errors, got.DetectS, got.RecoverS)
	}
	// The hold ends at the step's end: a recovery in the last windows
	// counts.
	got = Analyze(win100(ok, ok, bad, ok, ok), []results.FaultRecord{{StartS: 0.2, EndS: 0.25}})[0]
	if !near(got.RecoverS, 0.05) {
		t.Errorf("recovery near the end: %v, want 0.05", got.RecoverS)
	}
}

// TestAnalyzeNoise checks the two latency thresholds on short windows: a
// stray slow request, no worse than the worst before the faults, neither
// detects a fault nor delays a recovery; a shift of the typical latency
// (p90) does both.
func TestAnalyzeNoise(t *testing.T) {
	w := func(p90, p99 float64) [3]float64 { return [3]float64{20, 20, p99*1000 + p90} }
	ws := win100(w(100, 150), w(100, 900), w(110, 160), w(90, 140), // before: worst p99 900
		w(100, 1500), w(2000, 2100), w(2100, 2200), // a stray 1.5 ms at 0.4 s; the fault shows at 0.5 s
		w(100, 1700), w(100, 150), w(100, 160), w(100, 150), w(100, 150), w(100, 150))
	for i := range ws {
		v := ws[i].P99US
		ws[i].P99US, ws[i].P90US = math.Floor(v/1000), math.Mod(v, 1000)
	}
	got := Analyze(ws, []results.FaultRecord{{Name: "slow", StartS: 0.4, EndS: 0.7}})[0]
	if !near(got.DetectS, 0.1) || !near(got.RecoverS, 0) {
		t.Errorf("detect %v recover %v, want 0.1 (the p90 shift, not the stray request) and 0", got.DetectS, got.RecoverS)
	}
	// A recovery that comes only after the next fault began must still
	// hold for RecoveredHold.
	ok, bad := [3]float64{20, 20, 100}, [3]float64{20, 10, 100}
	ws = win100(ok, ok, bad, bad, bad, ok, bad, ok, ok, ok, ok, ok, ok)
	got = Analyze(ws, []results.FaultRecord{{Name: "a", StartS: 0.2, EndS: 0.3}, {Name: "b", StartS: 0.4, EndS: 0.5}})[0]
	if !near(got.RecoverS, 0.4) {
		t.Errorf("recover %v, want 0.4 (the one healthy window at 0.5 s does not hold)", got.RecoverS)
	}
}

// TestAnalyzeInFlight checks that requests in flight when a fault began
// count for it, and do not keep an earlier fault from having recovered.
func TestAnalyzeInFlight(t *testing.T) {
	ok, some, half := [3]float64{20, 20, 100}, [3]float64{20, 18, 100}, [3]float64{20, 10, 100}
	// loss ends at 0.4, recovers at 0.5; the kill at 1.0 has 2 casualties
	// in the window before it.
	slow := [3]float64{20, 20, 5000}
	ws := win100(ok, ok, ok, slow, slow, ok, ok, ok, ok, some, half, half, ok, ok, ok, ok, ok, ok)
	got := Analyze(ws, []results.FaultRecord{{Name: "loss", StartS: 0.3, EndS: 0.4}, {Name: "kill", StartS: 1.0, EndS: 1.2}})
	if loss, kill := got[0], got[1]; !near(loss.RecoverS, 0.1) || loss.Errors != 0 || kill.Errors != 22 || kill.DetectS != 0 {
		t.Errorf("loss recovered after %v with %d errors, kill %d errors detected after %v; want 0.1, 0, 22, 0",
			loss.RecoverS, loss.Errors, kill.Errors, kill.DetectS)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// TestAnalyzeOverlap checks that the baseline comes from windows before
// any fault and that overlapping faults share their errors instead of
// both counting them.
func TestAnalyzeOverlap(t *testing.T) {
	ok := [3]float64{100, 100, 100}
	ws := win(ok, ok, [3]float64{100, 100, 900}, [3]float64{100, 80, 900}, [3]float64{100, 90, 100}, [3]float64{100, 95, 100}, ok, ok)
	faults := []results.FaultRecord{
		{Name: "slow", StartS: 2, EndS: 4},
		{Name: "kill", StartS: 3, EndS: 4.5},
	}
	got := Analyze(ws, faults)
	slow, kill := got[0], got[1]
	// The baseline is 100 µs (windows 0 and 1), not the 900 µs of the
	// windows the first fault slowed: the kill's windows at 900 µs are
	// degraded.
	if slow.DetectS != 0 || kill.DetectS != 0 {
		t.Errorf("detect slow %v kill %v, want 0 0", slow.DetectS, kill.DetectS)
	}
	// Windows 3..5 are claimed by both (slow recovers at 6, kill at 6):
	// 20+10+5 errors shared, none counted twice as a fault's own.
	if slow.Errors != 0 || kill.Errors != 0 || slow.SharedErrors != 35 || kill.SharedErrors != 35 ||
		!slices.Equal(slow.SharedWith, []string{"kill"}) || !slices.Equal(kill.SharedWith, []string{"slow"}) {
		t.Errorf("slow %d+%d shared with %v, kill %d+%d shared with %v; want 0+35 with each other",
			slow.Errors, slow.SharedErrors, slow.SharedWith, kill.Errors, kill.SharedErrors, kill.SharedWith)
	}
	if slow.RecoverS != 2 || kill.RecoverS != 1.5 {
		t.Errorf("recover slow %v kill %v, want 2 1.5", slow.RecoverS, kill.RecoverS)
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
