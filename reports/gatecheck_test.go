package reports

import (
	"bytes"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/meshbench/meshbench/harness/results"
)

// noise describes a synthetic machine: the log-sd of each repetition's
// p50 (p99 gets twice as much, CPU half), and of a drift common to every
// datapath of a repetition (the machine getting busier or quieter).
type noise struct {
	lsd, drift float64
}

// noisyRun is a synthetic run of reps interleaved repetitions of five
// datapaths at two rates, with lognormal noise drawn from seed.
func noisyRun(id string, seed uint64, reps int, nz noise) *results.Run {
	rng := rand.New(rand.NewPCG(seed, 7))
	dps := []struct {
		name          string
		p50, p99, cpu float64
		segs          float64
	}{
		{"none", 200, 400, 350, 4},
		{"sidecar", 450, 2000, 600, 12},
		{"sockmap", 420, 1800, 560, 4},
		{"nodeproxy", 400, 1500, 520, 8},
		{"afxdp", 300, 900, 700, 4},
	}
	run := &results.Run{Schema: results.Schema, ID: id, Status: results.StatusOK, Environment: testEnv("c0ffee"),
		RepetitionOrder: results.OrderInterleaved}
	for rep := 1; rep <= reps; rep++ {
		for _, rate := range []float64{500, 2000} {
			drift := math.Exp(nz.drift * rng.NormFloat64())
			for _, dp := range dps {
				ln := func(sd float64) float64 { return math.Exp(sd * rng.NormFloat64()) }
				run.Steps = append(run.Steps, results.Step{
					Datapath: dp.name, Service: "echo", Repetition: rep, OfferedRPS: rate,
					AchievedRPS: rate * (1 - 0.001*rng.Float64()), SuccessRatio: 1,
					LatencyUS: results.Latency{P50: dp.p50 * drift * ln(nz.lsd), P99: dp.p99 * drift * ln(2*nz.lsd), P999: dp.p99 * 2 * drift * ln(3*nz.lsd)},
					Cost:      results.Cost{CPUMicrosPerRequest: dp.cpu * ln(nz.lsd/2), SegmentsPerRequest: dp.segs * ln(0.002)},
				})
			}
		}
	}
	run.Summaries = results.Summarize(run.Steps)
	return run
}

// oldGate is the gate before multiple-comparison control: any metric, all
// gated, with the Mann-Whitney U test at 0.05 and its threshold.
func oldGate(c *Comparison) bool {
	for _, m := range c.Metrics {
		if m.PRank < 0.05 && m.Worse && m.Beyond {
			return true
		}
	}
	return false
}

func TestCheckGate(t *testing.T) {
	// A quiet machine: p50 log-sd 0.03 per repetition, p99 0.06, and a
	// drift of 0.05 common to the datapaths of a repetition.
	quiet := noise{lsd: 0.03, drift: 0.05}
	run := noisyRun("r1", 1, 10, quiet)
	g, err := CheckGate([]*results.Run{run}, GateCheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if g.Repetitions != 10 || g.Half != 5 || g.Splits != 252 || !g.Exhaustive {
		t.Fatalf("%d repetitions, halves of %d, %d splits (exhaustive %v); want 10, 5, all 252", g.Repetitions, g.Half, g.Splits, g.Exhaustive)
	}
	if len(g.Levels) != 2 || g.Levels[0].Alpha != DefaultAlpha || g.Levels[1].Alpha != 0.1 {
		t.Fatalf("levels %+v, want the gate's 0.05 and 0.1", g.Levels)
	}
	gate, loose := g.Levels[0], g.Levels[1]
	if fa := g.FalseAlarmRate(); fa > GateCheckFalseAlarmTarget {
		t.Errorf("false alarms %d/%d = %.1f%%, want ≤ 5%%: %v", gate.FalseAlarms, g.Splits, fa*100, gate.Flagged)
	}
	// The old gate, on the same splits, cried wolf on many of them.
	old := 0
	splits, _ := makeSplits(10, 5, 1000, 1)
	rounds := roundsOf(0, run)
	for _, sp := range splits {
		c, err := Compare(splitRun("b", run.Environment, run.Scenario, rounds, sp[0], nil), splitRun("n", run.Environment, run.Scenario, rounds, sp[1], nil), CompareOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if oldGate(c) {
			old++
		}
	}
	if frac(old, len(splits)) < 0.2 {
		t.Errorf("the uncorrected gate flagged %d/%d splits; the test data should make it cry wolf", old, len(splits))
	}
	t.Logf("quiet machine: false alarms %d/%d at 0.05, %d at 0.1 (uncorrected Mann-Whitney: %d/%d)", gate.FalseAlarms, g.Splits, loose.FalseAlarms, old, len(splits))

	// On a quiet machine a 1.3× p99 in any one datapath is caught, on
	// its p99, in at least 80% of the splits.
	if len(gate.Power) != 5 {
		t.Fatalf("power rows %+v, want the four meshes and all", gate.Power)
	}
	for i, p := range gate.Power {
		t.Logf("power %s: %d/%d on target at 0.05, %d at 0.1", p.Datapath, p.OnTarget, g.Splits, loose.Power[i].OnTarget)
		if frac(p.OnTarget, g.Splits) < GateCheckPowerTarget || p.Caught < p.OnTarget {
			t.Errorf("%s: caught %d, on its p99 %d of %d splits; want ≥ 80%%", p.Datapath, p.Caught, p.OnTarget, g.Splits)
		}
		// A looser level flags at least as much.
		if lp := loose.Power[i]; lp.OnTarget < p.OnTarget || lp.Datapath != p.Datapath {
			t.Errorf("%s: %d on target at 0.1, fewer than %d at 0.05", p.Datapath, lp.OnTarget, p.OnTarget)
		}
	}
	if loose.FalseAlarms < gate.FalseAlarms {
		t.Errorf("%d false alarms at 0.1, fewer than %d at 0.05", loose.FalseAlarms, gate.FalseAlarms)
	}

	var text bytes.Buffer
	if err := g.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"10 repetitions of commit c0ffee", "all 252 ordered splits into 5 base + 5 new", "False alarms: splits flagged with nothing changed",
		"p99 × 1.3 in one datapath", "0.05 (the gate)", "power: sidecar"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, text.String())
		}
	}
	t.Log(text.String())
}

// On a noisy machine the gate still keeps its false alarms down, and
// loses power instead: the report says so rather than crying wolf.
func TestGateCheckNoisy(t *testing.T) {
	run := noisyRun("r1", 2, 10, noise{lsd: 0.15, drift: 0.15})
	g, err := CheckGate([]*results.Run{run}, GateCheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if fa := g.FalseAlarmRate(); fa > GateCheckFalseAlarmTarget {
		t.Errorf("false alarms %.1f%%, want ≤ 5%%: %v", fa*100, g.Levels[0].Flagged)
	}
	for _, p := range g.Levels[0].Power {
		if p.Datapath != "all" && frac(p.OnTarget, g.Splits) >= GateCheckPowerTarget {
			t.Errorf("%s: power %d/%d with a p99 log-sd of 0.3", p.Datapath, p.OnTarget, g.Splits)
		}
	}
	var text bytes.Buffer
	if err := g.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "% !") {
		t.Errorf("the report does not mark the missed power target:\n%s", text.String())
	}
}

// Several runs are pooled, random splits are reproducible from their
// seed, and the runs are compared with each other as the nightly job
// would.
func TestGateCheckPooledRandom(t *testing.T) {
	quiet := noise{lsd: 0.04, drift: 0.05}
	runs := []*results.Run{noisyRun("a", 3, 5, quiet), noisyRun("b", 4, 5, quiet)}
	opts := GateCheckOptions{Splits: 50, Seed: 9, Half: 4}
	g1, err := CheckGate(runs, opts)
	if err != nil {
		t.Fatal(err)
	}
	g2, _ := CheckGate(runs, opts)
	if g1.Repetitions != 10 || g1.Splits != 50 || g1.Exhaustive || g1.FalseAlarmRate() != g2.FalseAlarmRate() || !slices.Equal(powerOf(g1), powerOf(g2)) {
		t.Errorf("pooled: %d repetitions, %d splits (exhaustive %v); reruns %v/%v false alarms, power %v/%v",
			g1.Repetitions, g1.Splits, g1.Exhaustive, g1.FalseAlarmRate(), g2.FalseAlarmRate(), powerOf(g1), powerOf(g2))
	}
	if len(g1.Pairs) != 2 || g1.Pairs[0].Base != "a" || g1.Pairs[0].New != "b" || g1.Pairs[1].Base != "b" {
		t.Errorf("pairs %+v", g1.Pairs)
	}
	if len(g1.Warnings) != 1 || !strings.Contains(g1.Warnings[0], "leaves 2 repetition(s) out") {
		t.Errorf("warnings %q", g1.Warnings)
	}
}

func powerOf(g *GateCheck) []int {
	var out []int
	for _, lv := range g.Levels {
		for _, p := range lv.Power {
			out = append(out, p.Caught, p.OnTarget)
		}
	}
	return out
}

func TestGateCheckErrors(t *testing.T) {
	if _, err := CheckGate(nil, GateCheckOptions{}); err == nil {
		t.Error("no runs: no error")
	}
	if _, err := CheckGate([]*results.Run{noisyRun("a", 1, 3, noise{})}, GateCheckOptions{}); err == nil || !strings.Contains(err.Error(), "cannot be split") {
		t.Errorf("3 repetitions: err %v", err)
	}
	if _, err := CheckGate([]*results.Run{noisyRun("a", 1, 4, noise{})}, GateCheckOptions{Inject: "p50"}); err == nil {
		t.Error("unknown injection: no error")
	}
}

func TestMakeSplits(t *testing.T) {
	for _, tc := range []struct {
		n, half, most int
		want          int
		exhaustive    bool
	}{
		{10, 5, 1000, 252, true},
		{4, 2, 1000, 6, true},
		{10, 4, 1000, 1000, false},
		{10, 5, 100, 100, false},
	} {
		splits, ex := makeSplits(tc.n, tc.half, tc.most, 1)
		if len(splits) != tc.want || ex != tc.exhaustive {
			t.Errorf("makeSplits(%d, %d, %d): %d splits, exhaustive %v; want %d, %v", tc.n, tc.half, tc.most, len(splits), ex, tc.want, tc.exhaustive)
		}
		seen := map[string]bool{}
		for _, sp := range splits {
			if len(sp[0]) != tc.half || len(sp[1]) != tc.half {
				t.Fatalf("split %v: sides not of %d", sp, tc.half)
			}
			for _, i := range sp[0] {
				if slices.Contains(sp[1], i) || i < 0 || i >= tc.n {
					t.Fatalf("split %v: sides overlap or out of range", sp)
				}
			}
			k := ""
			for _, side := range sp {
				for _, i := range side {
					k += string(rune('a' + i))
				}
				k += "|"
			}
			if tc.exhaustive && seen[k] {
				t.Fatalf("split %v twice", sp)
			}
			seen[k] = true
		}
	}
}
