package reports

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/internal/golden"
)

// synthRun makes a run of datapaths × one rate whose repetitions have the
// given p99 values; other metrics get small fixed per-repetition noise so
// that they compare as unchanged between two synthRuns.
func synthRun(id string, p99 map[string][]float64) *results.Run {
	run := &results.Run{Schema: results.Schema, ID: id, Status: results.StatusOK,
		Environment: testEnv("c-" + id), RepetitionOrder: results.OrderInterleaved}
	noise := []float64{1.00, 1.01, 0.99, 1.02, 0.98, 1.015, 0.985}
	for _, dp := range sortedKeys(p99) {
		for i, v := range p99[dp] {
			n := noise[i%len(noise)]
			run.Steps = append(run.Steps, results.Step{
				Datapath: dp, Service: "echo", Repetition: i + 1, OfferedRPS: 1000,
				AchievedRPS: 1000 * n, SuccessRatio: 1, Requests: 10000, Successes: 10000,
				LatencyUS: results.Latency{P50: 40 * n, P99: v, P999: 2 * v},
				Cost:      results.Cost{CPUMicrosPerRequest: 60 * n, SegmentsPerRequest: 2 * n},
				Proof:     results.Proof{Verified: true},
			})
		}
	}
	run.Summaries = results.Summarize(run.Steps)
	return run
}

// testEnv is the environment of a synthetic run: the same machine for
// every run, with a noise fingerprint.
func testEnv(commit string) results.Environment {
	return results.Environment{
		Hostname: "bench-1", Kernel: "6.18.44", OS: "linux", Arch: "amd64", CPUModel: "AMD EPYC",
		Cores: 2, MemoryMiB: 24105, GoVersion: "go1.26.8", Commit: commit, Provider: "netns",
		Noise: &results.Noise{
			Timer:            []results.TimerProbe{{SleepUS: 100, Samples: 300, OvershootP50US: 60, OvershootP99US: 300}},
			CalibrationP50US: 250, CalibrationP99US: 400,
		},
	}
}

func scale(v []float64, f float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = x * f
	}
	return out
}

func metric(t *testing.T, c *Comparison, dp, name string) MetricComparison {
	t.Helper()
	for _, m := range c.Metrics {
		if m.Datapath == dp && m.Metric == name {
			return m
		}
	}
	t.Fatalf("no %s/%s in comparison", dp, name)
	return MetricComparison{}
}

func TestCompare(t *testing.T) {
	base5 := []float64{100, 103, 98, 101, 99}
	tests := []struct {
		name           string
		base, new      *results.Run
		opts           CompareOptions
		wantRegressed  bool
		check          func(t *testing.T, c *Comparison)
		wantTextSubstr []string
	}{
		{
			name: "identical fixture runs",
			base: makeFixture(), new: makeFixture(),
			wantRegressed: false,
			check: func(t *testing.T, c *Comparison) {
				// none has the absolute metrics, sidecar also the three
				// ratios to none, at each of the two rates.
				if want := 2*(len(metricDefs)-3) + 2*len(metricDefs); len(c.Metrics) != want {
					t.Errorf("%d metrics compared, want %d", len(c.Metrics), want)
				}
				// The fixture has no noise fingerprint, but a calibration
				// step, which stands in for it.
				if !c.AbsoluteGated || c.EnvironmentsDiffer() || c.Env.Noise != NoiseSimilar || len(c.Env.Figures) != 2 {
					t.Errorf("identical runs: absolute gated %v, environments differ %v, noise %s", c.AbsoluteGated, c.EnvironmentsDiffer(), c.Env.Noise)
				}
				for _, m := range c.Metrics {
					if m.Significant || m.ChangePercent != 0 && m.Metric != MetricSuccessRatio {
						t.Errorf("%s %s: significant=%v change=%v on identical runs", m.Datapath, m.Metric, m.Significant, m.ChangePercent)
					}
				}
			},
		},
		{
			name:          "p99 up 30% over 5 repetitions",
			base:          synthRun("base", map[string][]float64{"none": base5, "sidecar": scale(base5, 2)}),
			new:           synthRun("new", map[string][]float64{"none": base5, "sidecar": scale(base5, 2.6)}),
			wantRegressed: true,
			check: func(t *testing.T, c *Comparison) {
				for _, name := range []string{MetricP99, MetricP99VsNone} {
					m := metric(t, c, "sidecar", name)
					if !m.Significant || !m.Regression || m.Q >= 0.05 || m.PRank >= 0.05 {
						t.Errorf("sidecar %s: significant=%v regression=%v q=%v p=%v; want a significant regression", name, m.Significant, m.Regression, m.Q, m.PRank)
					}
					if m.ChangePercent < 29.9 || m.ChangePercent > 30.1 {
						t.Errorf("sidecar %s change = %.2f%%, want 30%%", name, m.ChangePercent)
					}
				}
				// p99.9 (2 × p99) moved as much but is not gated.
				if m := metric(t, c, "sidecar", MetricP999); m.Gated || m.Regression || m.verdict() != "worse beyond threshold (not gated)" {
					t.Errorf("sidecar p999: gated=%v regression=%v verdict %q", m.Gated, m.Regression, m.verdict())
				}
				if got := c.Regressions(); len(got) != 2 {
					t.Errorf("%d regressions, want 2 (p99 and p99 ÷ none): %+v", len(got), got)
				}
				if m := metric(t, c, "none", MetricP99); m.Regression || m.Significant {
					t.Errorf("none p99 unchanged but significant=%v regression=%v", m.Significant, m.Regression)
				}
			},
			wantTextSubstr: []string{"REGRESSION", "+30.0%", "p=0.008 n=5+5", "2.00×", "2.60×"},
		},
		{
			name: "noisy small change is not significant",
			base: synthRun("base", map[string][]float64{"sidecar": {100, 112, 94, 106, 97}}),
			new:  synthRun("new", map[string][]float64{"sidecar": {104, 110, 96, 109, 99}}),
			check: func(t *testing.T, c *Comparison) {
				if c.Underpowered() {
					t.Error("Underpowered() = true with 5 repetitions per side")
				}
				m := metric(t, c, "sidecar", MetricP99)
				if m.Significant || m.Regression {
					t.Errorf("p99: significant=%v (q=%v p=%v) regression=%v; want not significant", m.Significant, m.Q, m.PRank, m.Regression)
				}
				if m.verdict() != "~" {
					t.Errorf("verdict %q, want ~", m.verdict())
				}
			},
		},
		{
			name: "three repetitions cannot show a difference",
			base: synthRun("base", map[string][]float64{"sidecar": {100, 101, 99}}),
			new:  synthRun("new", map[string][]float64{"sidecar": {200, 201, 199}}),
			check: func(t *testing.T, c *Comparison) {
				m := metric(t, c, "sidecar", MetricP99)
				if m.Significant || m.Regression || len(m.Warnings) == 0 || !strings.Contains(m.Warnings[0], "need >= 4 samples") {
					t.Errorf("p99: significant=%v warnings=%q; want benchmath's too-few-samples warning", m.Significant, m.Warnings)
				}
				if !c.Underpowered() {
					t.Error("Underpowered() = false with 3 repetitions per side")
				}
			},
			wantTextSubstr: []string{"note: need >= 4 samples", "none could be"},
		},
		{
			name: "significant but within threshold",
			base: synthRun("base", map[string][]float64{"sidecar": base5}),
			new:  synthRun("new", map[string][]float64{"sidecar": scale(base5, 1.06)}),
			check: func(t *testing.T, c *Comparison) {
				m := metric(t, c, "sidecar", MetricP99)
				if !m.Significant || m.Regression || m.verdict() != "worse, within threshold" {
					t.Errorf("p99: significant=%v regression=%v verdict=%q", m.Significant, m.Regression, m.verdict())
				}
			},
		},
		{
			name:          "tighter threshold from options",
			base:          synthRun("base", map[string][]float64{"sidecar": base5}),
			new:           synthRun("new", map[string][]float64{"sidecar": scale(base5, 1.06)}),
			opts:          CompareOptions{Thresholds: map[string]Threshold{MetricP99: {Percent: 5}}},
			wantRegressed: true,
		},
		{
			name: "improvement is not a regression",
			base: synthRun("base", map[string][]float64{"sidecar": base5}),
			new:  synthRun("new", map[string][]float64{"sidecar": scale(base5, 0.5)}),
			check: func(t *testing.T, c *Comparison) {
				if m := metric(t, c, "sidecar", MetricP99); m.verdict() != "better" {
					t.Errorf("verdict %q, want better", m.verdict())
				}
			},
		},
		{
			name:           "datapath lost in the new run",
			base:           synthRun("base", map[string][]float64{"none": base5, "sidecar": base5}),
			new:            synthRun("new", map[string][]float64{"none": base5}),
			wantRegressed:  true,
			wantTextSubstr: []string{"missing: sidecar at 1000 req/s"},
		},
		{
			name:          "datapath lost, allowed",
			base:          synthRun("base", map[string][]float64{"none": base5, "sidecar": base5}),
			new:           synthRun("new", map[string][]float64{"none": base5}),
			opts:          CompareOptions{AllowMissing: true},
			wantRegressed: false,
		},
		{
			name: "empty runs",
			base: &results.Run{Schema: results.Schema, ID: "a"},
			new:  &results.Run{Schema: results.Schema, ID: "b"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Compare(tc.base, tc.new, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Regressed(); got != tc.wantRegressed {
				t.Errorf("Regressed() = %v, want %v", got, tc.wantRegressed)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
			var text, md bytes.Buffer
			if err := c.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			if err := c.WriteMarkdown(&md); err != nil {
				t.Fatal(err)
			}
			for _, s := range tc.wantTextSubstr {
				if !strings.Contains(text.String(), s) {
					t.Errorf("text output lacks %q:\n%s", s, text.String())
				}
			}
			wantIcon := "✅"
			if tc.wantRegressed {
				wantIcon = "❌"
			}
			if !strings.Contains(md.String(), wantIcon) {
				t.Errorf("markdown lacks %s:\n%s", wantIcon, md.String())
			}
		})
	}
}

// TestCompareEnvironment checks what travels between machines: when the
// environments differ (the machine, or its noise), absolute figures are
// shown for information only, the within-run ratios to none and the
// success ratio are still gated, and --strict-env has something to act on
// only for the machine.
func TestCompareEnvironment(t *testing.T) {
	base5 := []float64{100, 103, 98, 101, 99}
	// sidecar's p99 grows 30%: its absolute p99 and its ratio to none.
	regressed := func() (*results.Run, *results.Run) {
		return synthRun("base", map[string][]float64{"none": base5, "sidecar": scale(base5, 2)}),
			synthRun("new", map[string][]float64{"none": base5, "sidecar": scale(base5, 2.6)})
	}
	tests := []struct {
		name          string
		change        func(new *results.Run)
		wantDiffer    bool // EnvironmentsDiffer
		wantAbsGated  bool
		wantNoise     NoiseVerdict
		wantTextSubst []string
	}{
		{
			name:         "same machine",
			change:       func(*results.Run) {},
			wantAbsGated: true, wantNoise: NoiseSimilar,
			wantTextSubst: []string{"about as noisy", "Absolute figures are gated"},
		},
		{
			name: "another kernel and more cores",
			change: func(r *results.Run) {
				r.Environment.Kernel, r.Environment.Cores = "6.19.2", 4
			},
			wantDiffer: true, wantNoise: NoiseSimilar,
			wantTextSubst: []string{"WARNING: THE ENVIRONMENTS DIFFER: kernel 6.18.44 → 6.19.2; cores 2 → 4.", "for information only"},
		},
		{
			name:          "a run from before interleaving",
			change:        func(r *results.Run) { r.RepetitionOrder = "" },
			wantAbsGated:  true,
			wantNoise:     NoiseSimilar,
			wantTextSubst: []string{"note: the new run measured each datapath's repetitions back to back (not interleaved)"},
		},
		{
			name:          "memory within 2% is the same machine",
			change:        func(r *results.Run) { r.Environment.MemoryMiB -= 100 },
			wantAbsGated:  true,
			wantNoise:     NoiseSimilar,
			wantTextSubst: []string{"Absolute figures are gated"},
		},
		{
			name: "the commit differs, as it should: not an environment change",
			change: func(r *results.Run) {
				r.Environment.Commit, r.Environment.Version = "abcdef0", "v9"
			},
			wantAbsGated: true, wantNoise: NoiseSimilar,
		},
		{
			name: "a noisier machine",
			change: func(r *results.Run) {
				r.Environment.Noise = &results.Noise{
					Timer:            []results.TimerProbe{{SleepUS: 100, Samples: 300, OvershootP50US: 95, OvershootP99US: 900}},
					CalibrationP50US: 260, CalibrationP99US: 700,
				}
			},
			wantNoise:     NoiseNoisier,
			wantTextSubst: []string{"p50 60 → 95 µs", "NOISIER", "for information only: the machines' noise differs"},
		},
		{
			name: "a quieter machine",
			change: func(r *results.Run) {
				r.Environment.Noise.CalibrationP50US = 190
			},
			wantNoise:     NoiseQuieter,
			wantTextSubst: []string{"QUIETER"},
		},
		{
			name: "no fingerprint but a calibration step in one run",
			change: func(r *results.Run) {
				r.Environment.Noise = nil
				r.Calibration = &results.Step{LatencyUS: results.Latency{P50: 255, P99: 390}}
			},
			wantAbsGated:  true,
			wantNoise:     NoiseSimilar,
			wantTextSubst: []string{"calibration latency p50 250 → 255 µs, p99 400 → 390 µs: the machines were about as noisy", "Absolute figures are gated"},
		},
		{
			name:          "no fingerprint in one run",
			change:        func(r *results.Run) { r.Environment.Noise = nil },
			wantNoise:     NoiseUnknown,
			wantTextSubst: []string{"cannot be told", "for information only"},
		},
		{
			name: "another scenario",
			change: func(r *results.Run) {
				r.Scenario.Resolved = []byte(`{"name": "other"}`)
			},
			wantDiffer: true, wantNoise: NoiseSimilar,
			wantTextSubst: []string{"scenario unknown → other (resolved differently)"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base, new := regressed()
			tc.change(new)
			c, err := Compare(base, new, CompareOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if c.EnvironmentsDiffer() != tc.wantDiffer || c.AbsoluteGated != tc.wantAbsGated || c.Env.Noise != tc.wantNoise {
				t.Errorf("differ %v, absolute gated %v, noise %s; want %v, %v, %s (%+v)",
					c.EnvironmentsDiffer(), c.AbsoluteGated, c.Env.Noise, tc.wantDiffer, tc.wantAbsGated, tc.wantNoise, c.Env)
			}
			// The ratio to none is gated whatever the environments.
			if m := metric(t, c, "sidecar", MetricP99VsNone); !m.Gated || !m.Regression {
				t.Errorf("p99 ÷ none: gated %v regression %v", m.Gated, m.Regression)
			}
			// The absolute p99 only when they match.
			abs := metric(t, c, "sidecar", MetricP99)
			if abs.Gated != tc.wantAbsGated || abs.Regression != tc.wantAbsGated || !abs.Significant {
				t.Errorf("absolute p99: gated %v regression %v significant %v", abs.Gated, abs.Regression, abs.Significant)
			}
			if !tc.wantAbsGated && abs.verdict() != "worse beyond threshold (not gated)" {
				t.Errorf("absolute p99 verdict %q", abs.verdict())
			}
			if m := metric(t, c, "sidecar", MetricSuccessRatio); !m.Gated {
				t.Error("the success ratio is not gated")
			}
			if !c.Regressed() || len(c.Regressions()) != map[bool]int{true: 2, false: 1}[tc.wantAbsGated] {
				t.Errorf("regressions %d", len(c.Regressions()))
			}
			var text bytes.Buffer
			if err := c.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			for _, sub := range tc.wantTextSubst {
				if !strings.Contains(text.String(), sub) {
					t.Errorf("text lacks %q:\n%s", sub, text.String())
				}
			}
		})
	}
}

// TestCompareRatiosCancelDrift shows why the ratios to none travel: a
// machine 40% slower in the new run, the same for every datapath in each
// repetition, moves every absolute latency (a regression when the
// environments match) but no ratio; a datapath that really got slower
// moves its ratio.
func TestCompareRatiosCancelDrift(t *testing.T) {
	base5 := []float64{100, 103, 98, 101, 99}
	drift := []float64{1.4, 1.38, 1.45, 1.41, 1.39}
	slower := func(v []float64, f float64) []float64 {
		out := make([]float64, len(v))
		for i := range v {
			out[i] = v[i] * drift[i] * f
		}
		return out
	}
	base := synthRun("base", map[string][]float64{"none": base5, "sidecar": scale(base5, 2), "sockmap": scale(base5, 1.8)})
	new := synthRun("new", map[string][]float64{"none": slower(base5, 1), "sidecar": slower(base5, 2), "sockmap": slower(base5, 1.8*1.3)})
	c, err := Compare(base, new, CompareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, dp := range []string{"none", "sidecar", "sockmap"} {
		if m := metric(t, c, dp, MetricP99); !m.Regression {
			t.Errorf("%s absolute p99 %+.0f%%: not a regression", dp, m.ChangePercent)
		}
	}
	if m := metric(t, c, "sidecar", MetricP99VsNone); m.Significant || m.ChangePercent > 0.1 || m.ChangePercent < -0.1 {
		t.Errorf("sidecar p99 ÷ none moved %+.1f%% (significant %v) with the machine", m.ChangePercent, m.Significant)
	}
	if m := metric(t, c, "sockmap", MetricP99VsNone); !m.Regression || m.ChangePercent < 29.9 || m.ChangePercent > 30.1 {
		t.Errorf("sockmap p99 ÷ none %+.1f%%, regression %v; want +30%%, a regression", m.ChangePercent, m.Regression)
	}
}

// TestCompareOutput pins the text and markdown layout.
func TestCompareOutput(t *testing.T) {
	base5 := []float64{100, 103, 98, 101, 99}
	c, err := Compare(
		synthRun("base", map[string][]float64{"none": base5, "sidecar": scale(base5, 2)}),
		synthRun("new", map[string][]float64{"none": base5, "sidecar": scale(base5, 2.6)}),
		CompareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var text, md bytes.Buffer
	if err := c.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("testdata", "compare.golden.txt"), text.Bytes())
	golden.Check(t, filepath.Join("testdata", "compare.golden.md"), md.Bytes())
}

func TestCompareNil(t *testing.T) {
	if _, err := Compare(nil, makeFixture(), CompareOptions{}); err == nil {
		t.Error("Compare(nil, run) succeeded")
	}
}
