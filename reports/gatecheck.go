package reports

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/meshbench/meshbench/harness/results"
)

// Injection kinds for GateCheckOptions.Inject.
const (
	InjectP99     = "p99"     // the p99 of one datapath
	InjectLatency = "latency" // every latency percentile of one datapath
)

// GateCheckOptions configures CheckGate. The zero value draws up to 1000
// splits into halves of half the repetitions, seeded with 1, and injects
// a 1.3× p99.
type GateCheckOptions struct {
	// Compare configures the gate under test.
	Compare CompareOptions
	// Splits is the most splits to run (default 1000). When there are no
	// more distinct ordered splits than that, every one is run, once.
	Splits int
	// Seed seeds the random splits (default 1).
	Seed uint64
	// Half is the number of repetitions on each side (default: half the
	// repetitions, rounded down).
	Half int
	// Factor multiplies the injected metrics in the new half for the
	// power estimate (default 1.3).
	Factor float64
	// Inject says what is multiplied: InjectP99 (default) or
	// InjectLatency.
	Inject string
	// Alphas are the significance levels to estimate the gate at; the
	// first is the gate's (default: Compare.Alpha, or DefaultAlpha, and
	// 0.1 to show what a looser level would buy).
	Alphas []float64
}

// GateCheckFalseAlarmTarget and GateCheckPowerTarget are the figures
// CheckGate's report holds its estimates to: at most 5% of comparisons
// of an unchanged commit flagged, and a 1.3× change caught in at least
// 80% of them (the usual power target).
const (
	GateCheckFalseAlarmTarget = 0.05
	GateCheckPowerTarget      = 0.80
)

// GateCheck is what CheckGate measured.
type GateCheck struct {
	// RunIDs and Commits are the pooled runs'; Repetitions how many
	// repetitions they held in all; Half the size of each side.
	RunIDs, Commits []string
	Repetitions     int
	Half            int
	// Splits is how many splits ran; Exhaustive is set when they were
	// every distinct ordered split.
	Splits     int
	Exhaustive bool
	// Factor and Inject describe the injected change.
	Factor float64
	Inject string
	// Levels are the estimates at each significance level, the gate's
	// first.
	Levels []GateLevel
	// Pairs compares the pooled runs with each other directly at the
	// gate's level, each ordered pair once: what the nightly job does
	// between two nights of one commit.
	Pairs []RunPair
	// Warnings say what limits the estimate.
	Warnings []string
}

// GateLevel is the gate's false-alarm rate and power at one
// significance level.
type GateLevel struct {
	Alpha float64
	// FalseAlarms is how many splits the gate flagged with nothing
	// changed, and Flagged how often each metric ("sidecar 500 req/s
	// p50 ÷ none") was among the regressions of those splits.
	FalseAlarms int
	Flagged     map[string]int
	// Power is what the gate caught with the injected change, one row per
	// datapath it was injected into, then "all" of them at once.
	Power []PowerRow
}

// PowerRow is the power of the gate against a change injected into one
// datapath (or every datapath, Datapath "all").
type PowerRow struct {
	Datapath string
	// Caught counts the splits the gate flagged; OnTarget those where it
	// flagged a metric the injection changed.
	Caught, OnTarget int
}

// RunPair is one direct comparison between two of the pooled runs.
type RunPair struct {
	Base, New   string
	Regressions []string
	EnvDiffer   bool
	Noise       NoiseVerdict
}

// FalseAlarmRate is the gate's false-alarm rate at its own level.
func (g *GateCheck) FalseAlarmRate() float64 { return frac(g.Levels[0].FalseAlarms, g.Splits) }

// round is one repetition of every datapath and rate: the unit a split
// moves, so that ratios to none keep their pairing.
type round struct {
	run   int
	steps []results.Step
}

// CheckGate estimates the gate's false-alarm rate and power from
// repetitions of one commit: it splits the repetitions of the runs
// (pooled) into two halves many times, runs the gate (Compare) on each
// split and counts the splits flagged, then does it again with the new
// half's latency scaled by Factor in one datapath at a time.
//
// The splits share repetitions, so the estimate is as good as the number
// of repetitions, not the number of splits. Within one run it misses what
// changes between nights; give several runs of the commit to pool them
// and to compare them with each other (GateCheck.Pairs).
func CheckGate(runs []*results.Run, opts GateCheckOptions) (*GateCheck, error) {
	if len(runs) == 0 {
		return nil, errors.New("gate-check: no runs")
	}
	if opts.Splits <= 0 {
		opts.Splits = 1000
	}
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	if opts.Factor <= 0 {
		opts.Factor = 1.3
	}
	if opts.Inject == "" {
		opts.Inject = InjectP99
	}
	if opts.Inject != InjectP99 && opts.Inject != InjectLatency {
		return nil, fmt.Errorf("gate-check: unknown injection %q (want %s or %s)", opts.Inject, InjectP99, InjectLatency)
	}
	alphas := opts.Alphas
	if len(alphas) == 0 {
		a := opts.Compare.Alpha
		if a <= 0 || a >= 1 {
			a = DefaultAlpha
		}
		alphas = []float64{a}
		if a != 0.1 {
			alphas = append(alphas, 0.1)
		}
	}
	opts.Compare.Alpha = alphas[0]
	// Both halves of a split come from the same runs: their absolute
	// figures are gated, as on a nightly runner whose environment and
	// noise did not move (the direct comparisons between runs below are
	// judged on their own environments).
	splitOpts := opts.Compare
	splitOpts.sameMachine = true
	g := &GateCheck{Factor: opts.Factor, Inject: opts.Inject}
	var rounds []round
	commits := map[string]bool{}
	for i, run := range runs {
		g.RunIDs = append(g.RunIDs, run.ID)
		if c := run.Environment.Commit; !commits[c] {
			commits[c] = true
			g.Commits = append(g.Commits, c)
		}
		rounds = append(rounds, roundsOf(i, run)...)
		if i > 0 {
			if d := compareEnvironments(runs[0], run, DefaultNoiseTolerance).Differences; len(d) > 0 {
				g.Warnings = append(g.Warnings, fmt.Sprintf("run %s differs from run %s (%s → %s and more): pooling them measures machines, not the gate", run.ID, runs[0].ID, d[0].Field, d[0].New))
			}
		}
	}
	if len(g.Commits) > 1 {
		g.Warnings = append(g.Warnings, fmt.Sprintf("the runs are of %d commits: a real change between them counts as a false alarm", len(g.Commits)))
	}
	g.Repetitions = len(rounds)
	g.Half = opts.Half
	if g.Half <= 0 {
		g.Half = g.Repetitions / 2
	}
	if g.Half < 2 || 2*g.Half > g.Repetitions {
		return nil, fmt.Errorf("gate-check: %d repetitions cannot be split into two halves of %d (need at least 4 repetitions)", g.Repetitions, g.Half)
	}
	if g.Half < 4 {
		g.Warnings = append(g.Warnings, fmt.Sprintf("halves of %d repetitions: the rank check needs 4 a side at alpha 0.05, so the gate cannot flag anything and power is 0", g.Half))
	}
	if 2*g.Half < g.Repetitions {
		g.Warnings = append(g.Warnings, fmt.Sprintf("each split leaves %d repetition(s) out", g.Repetitions-2*g.Half))
	}

	splits, exhaustive := makeSplits(g.Repetitions, g.Half, opts.Splits, opts.Seed)
	g.Splits, g.Exhaustive = len(splits), exhaustive
	env := runs[0].Environment
	scenario := runs[0].Scenario

	var meshes []string
	seen := map[string]bool{}
	for _, r := range rounds {
		for _, s := range r.steps {
			if !seen[s.Datapath] {
				seen[s.Datapath] = true
				if s.Datapath != baselineDatapath {
					meshes = append(meshes, s.Datapath)
				}
			}
		}
	}
	targets := append(slices.Clone(meshes), "all")
	for _, a := range alphas {
		lv := GateLevel{Alpha: a, Flagged: map[string]int{}}
		for _, t := range targets {
			lv.Power = append(lv.Power, PowerRow{Datapath: t})
		}
		g.Levels = append(g.Levels, lv)
	}
	for _, sp := range splits {
		base := splitRun("base", env, scenario, rounds, sp[0], nil)
		c, err := Compare(base, splitRun("new", env, scenario, rounds, sp[1], nil), splitOpts)
		if err != nil {
			return nil, err
		}
		for l := range g.Levels {
			lv := &g.Levels[l]
			if c := c.atAlpha(lv.Alpha); c.Regressed() {
				lv.FalseAlarms++
				for _, m := range c.Regressions() {
					lv.Flagged[fmt.Sprintf("%s %s req/s %s", m.Datapath, fmtRate(m.OfferedRPS), metricLabel(m.Metric))]++
				}
			}
		}
		for i, t := range targets {
			inj := func(s *results.Step) {
				if t == "all" || s.Datapath == t {
					scaleLatency(s, opts.Factor, opts.Inject)
				}
			}
			c, err := Compare(base, splitRun("new", env, scenario, rounds, sp[1], inj), splitOpts)
			if err != nil {
				return nil, err
			}
			for l := range g.Levels {
				lv := &g.Levels[l]
				c := c.atAlpha(lv.Alpha)
				if !c.Regressed() {
					continue
				}
				lv.Power[i].Caught++
				for _, m := range c.Regressions() {
					if (t == "all" || m.Datapath == t) && injected(m.Metric, opts.Inject) {
						lv.Power[i].OnTarget++
						break
					}
				}
			}
		}
	}

	for i, a := range runs {
		for j, b := range runs {
			if i == j {
				continue
			}
			c, err := Compare(a, b, opts.Compare)
			if err != nil {
				return nil, err
			}
			p := RunPair{Base: a.ID, New: b.ID, EnvDiffer: c.EnvironmentsDiffer(), Noise: c.Env.Noise}
			for _, m := range c.Regressions() {
				p.Regressions = append(p.Regressions, fmt.Sprintf("%s %s req/s %s %s", m.Datapath, fmtRate(m.OfferedRPS), metricLabel(m.Metric), m.fmtChange()))
			}
			g.Pairs = append(g.Pairs, p)
		}
	}
	return g, nil
}

// roundsOf returns a run's repetitions as rounds, in repetition order.
// Only the figures the gate reads are kept.
func roundsOf(runIndex int, run *results.Run) []round {
	byRep := map[int][]results.Step{}
	for _, s := range run.Steps {
		byRep[s.Repetition] = append(byRep[s.Repetition], results.Step{
			Datapath: s.Datapath, Service: s.Service, OfferedRPS: s.OfferedRPS,
			AchievedRPS: s.AchievedRPS, SuccessRatio: s.SuccessRatio,
			LatencyUS: s.LatencyUS, Cost: s.Cost, Proof: results.Proof{Verified: s.Proof.Verified},
		})
	}
	var out []round
	for _, rep := range sortedKeys(byRep) {
		out = append(out, round{run: runIndex, steps: byRep[rep]})
	}
	return out
}

// makeSplits returns splits of n rounds into two disjoint sides of half
// rounds each: every ordered split when there are at most max of them,
// else max random ones.
func makeSplits(n, half, most int, seed uint64) (splits [][2][]int, exhaustive bool) {
	if count := binomial(n, half) * binomial(n-half, half); count > 0 && count <= float64(most) {
		for _, a := range combinations(n, half) {
			rest := complement(n, a)
			for _, b := range combinations(len(rest), half) {
				side := make([]int, half)
				for i, k := range b {
					side[i] = rest[k]
				}
				splits = append(splits, [2][]int{a, side})
			}
		}
		return splits, true
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for range most {
		p := rng.Perm(n)
		a, b := slices.Clone(p[:half]), slices.Clone(p[half:2*half])
		slices.Sort(a)
		slices.Sort(b)
		splits = append(splits, [2][]int{a, b})
	}
	return splits, false
}

// combinations returns every k-subset of 0..n-1, each ascending.
func combinations(n, k int) [][]int {
	var out [][]int
	cur := make([]int, 0, k)
	var rec func(start int)
	rec = func(start int) {
		if len(cur) == k {
			out = append(out, slices.Clone(cur))
			return
		}
		for i := start; i <= n-(k-len(cur)); i++ {
			cur = append(cur, i)
			rec(i + 1)
			cur = cur[:len(cur)-1]
		}
	}
	rec(0)
	return out
}

func complement(n int, a []int) []int {
	var out []int
	for i := range n {
		if !slices.Contains(a, i) {
			out = append(out, i)
		}
	}
	return out
}

func binomial(n, k int) float64 {
	if k < 0 || k > n {
		return 0
	}
	r := 1.0
	for i := 1; i <= k; i++ {
		r = r * float64(n-k+i) / float64(i)
	}
	return r
}

// splitRun makes a run of the given rounds, numbered 1.. in order, with
// change (when not nil) applied to each copied step.
func splitRun(id string, env results.Environment, sc results.ScenarioCopy, rounds []round, idx []int, change func(*results.Step)) *results.Run {
	run := &results.Run{Schema: results.Schema, ID: id, Status: results.StatusOK, Environment: env, Scenario: sc}
	for rep, i := range idx {
		for _, s := range rounds[i].steps {
			s.Repetition = rep + 1
			if change != nil {
				change(&s)
			}
			run.Steps = append(run.Steps, s)
		}
	}
	run.Summaries = results.Summarize(run.Steps)
	return run
}

// scaleLatency multiplies a step's p99, or all its latency percentiles,
// by f.
func scaleLatency(s *results.Step, f float64, what string) {
	if what == InjectLatency {
		s.LatencyUS.Mean *= f
		s.LatencyUS.P50 *= f
		s.LatencyUS.P90 *= f
		s.LatencyUS.P999 *= f
		s.LatencyUS.Max *= f
	}
	s.LatencyUS.P99 *= f
}

// injected reports whether an injection of kind what changes metric.
func injected(metric, what string) bool {
	switch metric {
	case MetricP99, MetricP99VsNone:
		return true
	case MetricP50, MetricP50VsNone, MetricP999:
		return what == InjectLatency
	}
	return false
}

func frac(n, d int) float64 {
	if d == 0 {
		return 0
	}
	return float64(n) / float64(d)
}

// WriteText writes the estimates for people.
func (g *GateCheck) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	var commits []string
	for _, c := range g.Commits {
		if len(c) == 40 {
			c = c[:12]
		}
		commits = append(commits, orUnknown(c))
	}
	fmt.Fprintf(ew, "gate-check: %d repetitions of commit %s (run %s)\n", g.Repetitions, strings.Join(commits, ", "), strings.Join(g.RunIDs, ", "))
	how := fmt.Sprintf("%d random splits (seeded)", g.Splits)
	if g.Exhaustive {
		how = fmt.Sprintf("all %d ordered splits", g.Splits)
	}
	fmt.Fprintf(ew, "splits: %s into %d base + %d new repetitions, the gate run on each as on one machine (absolute figures gated)\n", how, g.Half, g.Half)
	for _, w := range g.Warnings {
		fmt.Fprintf(ew, "WARNING: %s\n", w)
	}

	what := "p99"
	if g.Inject == InjectLatency {
		what = "every latency percentile"
	}
	fmt.Fprintf(ew, "\nFalse alarms: splits flagged with nothing changed (target ≤ %s).\n", fmtFrac(GateCheckFalseAlarmTarget))
	fmt.Fprintf(ew, "Power: splits flagged on a changed metric with the new half's %s × %g in one datapath, %d repetitions a side (target ≥ %s).\n\n",
		what, g.Factor, g.Half, fmtFrac(GateCheckPowerTarget))
	tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
	head := "alpha\tfalse alarms\t"
	for _, p := range g.Levels[0].Power {
		if p.Datapath == "all" {
			head += "power: all at once*\t"
		} else {
			head += "power: " + p.Datapath + "\t"
		}
	}
	fmt.Fprintln(tw, head)
	for i, lv := range g.Levels {
		name := fmt.Sprintf("%g", lv.Alpha)
		if i == 0 {
			name += " (the gate)"
		}
		fa := frac(lv.FalseAlarms, g.Splits)
		row := fmt.Sprintf("%s\t%d/%d = %s%s\t", name, lv.FalseAlarms, g.Splits, fmtFrac(fa), miss(fa > GateCheckFalseAlarmTarget))
		for _, p := range lv.Power {
			pw := frac(p.OnTarget, g.Splits)
			row += fmt.Sprintf("%s%s\t", fmtFrac(pw), miss(pw < GateCheckPowerTarget))
		}
		fmt.Fprintln(tw, row)
	}
	tw.Flush()
	missed := false
	for _, lv := range g.Levels {
		missed = missed || frac(lv.FalseAlarms, g.Splits) > GateCheckFalseAlarmTarget
		for _, p := range lv.Power {
			missed = missed || frac(p.OnTarget, g.Splits) < GateCheckPowerTarget
		}
	}
	if missed {
		fmt.Fprintln(ew, "! misses its target.")
	}
	fmt.Fprintln(ew, "* every datapath changed at once, like a change of the machine or the harness: only absolute figures can see it, and only when the environments match.")
	if lv := g.Levels[0]; len(lv.Flagged) > 0 {
		keys := sortedKeys(lv.Flagged)
		slices.SortStableFunc(keys, func(a, b string) int { return lv.Flagged[b] - lv.Flagged[a] })
		if len(keys) > 8 {
			keys = keys[:8]
		}
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s (%d)", k, lv.Flagged[k]))
		}
		fmt.Fprintf(ew, "\nThe false alarms at alpha %g were on: %s\n", lv.Alpha, strings.Join(parts, ", "))
	}

	if len(g.Pairs) > 0 {
		fmt.Fprintf(ew, "\nBetween runs of the commit, as the nightly job compares them (alpha %g):\n", g.Levels[0].Alpha)
		for _, p := range g.Pairs {
			res := "no regression"
			if len(p.Regressions) > 0 {
				res = fmt.Sprintf("REGRESSION (%s)", strings.Join(p.Regressions, "; "))
			}
			env := "noise " + string(p.Noise)
			if p.EnvDiffer {
				env = "environments differ, " + env
			}
			fmt.Fprintf(ew, "  %s → %s: %s [%s]\n", p.Base, p.New, res, env)
		}
	}
	fmt.Fprintln(ew, "\nThe splits share repetitions: these rates are as good as the repetitions behind them, not the number of splits. Splits of one run miss what changes between nights; pool several runs of the commit to see it.")
	return ew.err
}

// miss marks a figure that misses its target.
func miss(missed bool) string {
	if missed {
		return " !"
	}
	return ""
}

func fmtFrac(f float64) string {
	return fmt.Sprintf("%.1f%%", f*100)
}
