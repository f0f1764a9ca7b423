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
		Environment: results.Environment{Commit: "c-" + id}}
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
				if len(c.Metrics) != 4*len(metricDefs) {
					t.Errorf("%d metrics compared, want %d", len(c.Metrics), 4*len(metricDefs))
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
				m := metric(t, c, "sidecar", MetricP99)
				if !m.Significant || !m.Regression || m.P >= 0.05 {
					t.Errorf("sidecar p99: significant=%v regression=%v p=%v; want a significant regression", m.Significant, m.Regression, m.P)
				}
				if m.ChangePercent < 29.9 || m.ChangePercent > 30.1 {
					t.Errorf("sidecar p99 change = %.2f%%, want 30%%", m.ChangePercent)
				}
				if got := c.Regressions(); len(got) != 2 { // p99 and p999 (2 × p99)
					t.Errorf("%d regressions, want 2 (p99, p999): %+v", len(got), got)
				}
				if m := metric(t, c, "none", MetricP99); m.Regression || m.Significant {
					t.Errorf("none p99 unchanged but significant=%v regression=%v", m.Significant, m.Regression)
				}
			},
			wantTextSubstr: []string{"REGRESSION", "+30.0%", "p=0.008 n=5+5"},
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
					t.Errorf("p99: significant=%v (p=%v) regression=%v; want not significant", m.Significant, m.P, m.Regression)
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
				if m.Significant || len(m.Warnings) == 0 || !strings.Contains(m.Warnings[0], "need >= 4 samples") {
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
