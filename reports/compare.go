package reports

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"

	"golang.org/x/perf/benchmath"

	"github.com/meshbench/meshbench/harness/results"
)

// Metric names Compare reports, in the order it reports them.
const (
	MetricP50          = "p50"
	MetricP99          = "p99"
	MetricP999         = "p999"
	MetricAchievedRPS  = "achieved_rps"
	MetricSuccessRatio = "success_ratio"
	MetricCPU          = "cpu_us_per_request"
	MetricSegments     = "segments_per_request"
)

// Threshold is how much worse a metric may get, between the base and the
// new median, before a significant change counts as a regression. Exactly
// one of Percent and Absolute is used: Absolute when it is non-zero.
type Threshold struct {
	// Percent is the allowed worsening relative to the base median, in
	// percent (10 means latency may grow by 10%, throughput fall by 10%).
	Percent float64
	// Absolute is the allowed worsening in the metric's own unit (for
	// success_ratio, a 0..1 ratio: 0.005 is half a percentage point).
	Absolute float64
}

// DefaultThresholds are the thresholds Compare uses for metrics that
// CompareOptions.Thresholds does not name.
var DefaultThresholds = map[string]Threshold{
	MetricP50:          {Percent: 10},
	MetricP99:          {Percent: 10},
	MetricP999:         {Percent: 10},
	MetricAchievedRPS:  {Percent: 5},
	MetricSuccessRatio: {Absolute: 0.005},
	MetricCPU:          {Percent: 15},
	MetricSegments:     {Percent: 10},
}

// DefaultAlpha is the significance level Compare uses by default, as
// benchstat does.
const DefaultAlpha = 0.05

// CompareOptions configures Compare. The zero value uses DefaultAlpha and
// DefaultThresholds.
type CompareOptions struct {
	// Alpha is the significance level of the Mann-Whitney U test; a change
	// is significant when p < Alpha. Default DefaultAlpha.
	Alpha float64
	// Thresholds override DefaultThresholds by metric name.
	Thresholds map[string]Threshold
	// AllowMissing keeps a datapath × rate that the base measured and the
	// new run did not from counting as a regression.
	AllowMissing bool
}

// metricDef describes one compared metric.
type metricDef struct {
	name   string
	label  string // for people, with unit
	higher bool   // higher is better
	get    func(results.Summary) results.Spread
}

var metricDefs = []metricDef{
	{MetricP50, "p50 (µs)", false, func(s results.Summary) results.Spread { return s.P50US }},
	{MetricP99, "p99 (µs)", false, func(s results.Summary) results.Spread { return s.P99US }},
	{MetricP999, "p99.9 (µs)", false, func(s results.Summary) results.Spread { return s.P999US }},
	{MetricAchievedRPS, "achieved (req/s)", true, func(s results.Summary) results.Spread { return s.AchievedRPS }},
	{MetricSuccessRatio, "success ratio", true, func(s results.Summary) results.Spread { return s.SuccessRatio }},
	{MetricCPU, "CPU (µs/req)", false, func(s results.Summary) results.Spread { return s.CPUMicrosPerReq }},
	{MetricSegments, "TCP segments/req", false, func(s results.Summary) results.Spread { return s.SegmentsPerReq }},
}

// MetricComparison is one metric of one datapath × rate in both runs.
type MetricComparison struct {
	Datapath   string
	OfferedRPS float64
	Metric     string
	// Base and New are the per-repetition values.
	Base, New []float64
	// BaseMedian and NewMedian are their medians.
	BaseMedian, NewMedian float64
	// ChangePercent is (new − base) / base × 100; NaN when base is 0.
	ChangePercent float64
	// P is the Mann-Whitney U test's p-value; Significant is P < Alpha.
	P           float64
	Alpha       float64
	Significant bool
	// Warnings explain why a test could not find a difference (for
	// example too few repetitions), as benchmath reports them.
	Warnings []string
	// Worse is true when the new median is worse than the base median.
	Worse bool
	// Threshold is the threshold applied, and Regression is Significant
	// and Worse beyond Threshold.
	Threshold  Threshold
	Regression bool
}

// Missing is a datapath × rate measured by only one of the two runs.
type Missing struct {
	Datapath   string
	OfferedRPS float64
	// InBase is true when only the base run has it (the new run lost it).
	InBase bool
}

// Comparison is the result of Compare.
type Comparison struct {
	BaseID, NewID         string
	BaseCommit, NewCommit string
	Alpha                 float64
	Metrics               []MetricComparison
	Missing               []Missing
	allowMissing          bool
}

// Compare compares each metric of each datapath × rate of two runs over
// their repetitions, with the Mann-Whitney U test as benchstat does
// (golang.org/x/perf/benchmath, AssumeNothing). A metric regressed when its
// change is significant and worse than its threshold.
func Compare(base, new *results.Run, opts CompareOptions) (*Comparison, error) {
	if base == nil || new == nil {
		return nil, errors.New("compare: nil run")
	}
	alpha := opts.Alpha
	if alpha <= 0 || alpha >= 1 {
		alpha = DefaultAlpha
	}
	th := benchmath.DefaultThresholds
	th.CompareAlpha = alpha
	c := &Comparison{
		BaseID: base.ID, NewID: new.ID,
		BaseCommit: base.Environment.Commit, NewCommit: new.Environment.Commit,
		Alpha:        alpha,
		allowMissing: opts.AllowMissing,
	}
	bm, nm := newModel(base), newModel(new)
	var keys []groupKey
	seen := map[groupKey]bool{}
	for _, mm := range []*model{bm, nm} {
		for _, dp := range mm.datapaths {
			for _, r := range mm.ratesOf(dp) {
				k := groupKey{dp, r}
				if _, ok := mm.summaries[k]; ok && !seen[k] {
					seen[k] = true
					keys = append(keys, k)
				}
			}
		}
	}
	for _, k := range keys {
		bs, inBase := bm.summaries[k]
		ns, inNew := nm.summaries[k]
		if !inBase || !inNew {
			c.Missing = append(c.Missing, Missing{Datapath: k.Datapath, OfferedRPS: k.Rate, InBase: inBase})
			continue
		}
		for _, def := range metricDefs {
			t, ok := opts.Thresholds[def.name]
			if !ok {
				t = DefaultThresholds[def.name]
			}
			c.Metrics = append(c.Metrics, compareMetric(k, def, def.get(bs), def.get(ns), t, &th))
		}
	}
	return c, nil
}

// values returns a Spread's per-repetition values, or its median alone for
// summaries written without them.
func values(s results.Spread) []float64 {
	if len(s.Values) > 0 {
		out := make([]float64, len(s.Values))
		for i, v := range s.Values {
			out[i] = finite(v)
		}
		return out
	}
	return []float64{finite(s.Median)}
}

func compareMetric(k groupKey, def metricDef, b, n results.Spread, t Threshold, th *benchmath.Thresholds) MetricComparison {
	mc := MetricComparison{
		Datapath: k.Datapath, OfferedRPS: k.Rate, Metric: def.name,
		Base: values(b), New: values(n),
		Alpha: th.CompareAlpha, Threshold: t,
	}
	mc.BaseMedian, mc.NewMedian = median(mc.Base), median(mc.New)
	mc.ChangePercent = math.NaN()
	if mc.BaseMedian != 0 {
		mc.ChangePercent = (mc.NewMedian - mc.BaseMedian) / math.Abs(mc.BaseMedian) * 100
	}
	bs := benchmath.NewSample(mc.Base, th)
	ns := benchmath.NewSample(mc.New, th)
	cmp := benchmath.AssumeNothing.Compare(bs, ns)
	mc.P = cmp.P
	mc.Significant = cmp.P < cmp.Alpha
	for _, w := range cmp.Warnings {
		mc.Warnings = append(mc.Warnings, w.Error())
	}
	delta := mc.NewMedian - mc.BaseMedian
	if def.higher {
		delta = -delta
	}
	mc.Worse = delta > 0
	if mc.Significant && mc.Worse {
		switch {
		case t.Absolute != 0:
			mc.Regression = delta > t.Absolute
		case mc.BaseMedian != 0:
			mc.Regression = delta/math.Abs(mc.BaseMedian)*100 > t.Percent
		}
	}
	return mc
}

// Regressed reports whether any metric regressed, or, unless
// AllowMissing was set, the new run lacks a datapath × rate the base has.
func (c *Comparison) Regressed() bool {
	for _, m := range c.Metrics {
		if m.Regression {
			return true
		}
	}
	if !c.allowMissing {
		for _, m := range c.Missing {
			if m.InBase {
				return true
			}
		}
	}
	return false
}

// Underpowered reports whether the comparison could not have found any
// significant change: for every metric, even two samples of its sizes
// that did not overlap at all would not differ significantly at Alpha
// (the Mann-Whitney U test needs 4 repetitions per side at alpha 0.05).
// It is false when nothing was compared.
func (c *Comparison) Underpowered() bool {
	if len(c.Metrics) == 0 {
		return false
	}
	for _, m := range c.Metrics {
		if canDetect(len(m.Base), len(m.New), c.Alpha) {
			return false
		}
	}
	return true
}

// canDetect reports whether samples of sizes n1 and n2 can differ
// significantly at alpha: it tests two samples that do not overlap.
func canDetect(n1, n2 int, alpha float64) bool {
	if n1 == 0 || n2 == 0 {
		return false
	}
	th := benchmath.DefaultThresholds
	th.CompareAlpha = alpha
	a, b := make([]float64, n1), make([]float64, n2)
	for i := range a {
		a[i] = float64(i)
	}
	for i := range b {
		b[i] = float64(n1 + i)
	}
	cmp := benchmath.AssumeNothing.Compare(benchmath.NewSample(a, &th), benchmath.NewSample(b, &th))
	return cmp.P < alpha
}

// Regressions returns the metrics that regressed.
func (c *Comparison) Regressions() []MetricComparison {
	var out []MetricComparison
	for _, m := range c.Metrics {
		if m.Regression {
			out = append(out, m)
		}
	}
	return out
}

// metricLabel returns a metric's label for people.
func metricLabel(name string) string {
	for _, d := range metricDefs {
		if d.name == name {
			return d.label
		}
	}
	return name
}

// fmtValue formats a metric value (success ratios as percentages).
func fmtValue(metric string, v float64) string {
	if metric == MetricSuccessRatio {
		return fmtPercent(v)
	}
	return fmtNum(v)
}

// fmtChange formats a change in percent, or for success ratios in
// percentage points.
func (m MetricComparison) fmtChange() string {
	if m.Metric == MetricSuccessRatio {
		return fmt.Sprintf("%+.2f pt", (m.NewMedian-m.BaseMedian)*100)
	}
	if math.IsNaN(m.ChangePercent) {
		if m.NewMedian == 0 {
			return "0%"
		}
		return "n/a (base 0)"
	}
	return fmt.Sprintf("%+.1f%%", m.ChangePercent)
}

// fmtTest formats the test result as benchstat does: "p=0.008 n=5+5".
func (m MetricComparison) fmtTest() string {
	return fmt.Sprintf("p=%.3f n=%d+%d", m.P, len(m.Base), len(m.New))
}

// verdict is a short word for the row: REGRESSION, better, worse (within
// threshold), ~ (not significant).
func (m MetricComparison) verdict() string {
	switch {
	case m.Regression:
		return "REGRESSION"
	case !m.Significant:
		return "~"
	case m.Worse:
		return "worse, within threshold"
	case m.NewMedian == m.BaseMedian:
		return "same"
	default:
		return "better"
	}
}

// String describes a threshold: "10%" or, when absolute, "0.005".
func (t Threshold) String() string {
	if t.Absolute != 0 {
		return fmt.Sprintf("%g", t.Absolute)
	}
	return fmt.Sprintf("%g%%", t.Percent)
}

// thresholdText describes the row's threshold in the row's terms
// (percentage points for success ratios).
func (m MetricComparison) thresholdText() string {
	if m.Metric == MetricSuccessRatio && m.Threshold.Absolute != 0 {
		return fmt.Sprintf("%g pt", m.Threshold.Absolute*100)
	}
	return m.Threshold.String()
}

// summaryLine says in one line whether the comparison found regressions.
func (c *Comparison) summaryLine() string {
	n := len(c.Regressions())
	lost := 0
	for _, m := range c.Missing {
		if m.InBase {
			lost++
		}
	}
	switch {
	case n == 0 && (lost == 0 || c.allowMissing) && c.Underpowered():
		return fmt.Sprintf("No regression detected, but none could be: the runs have too few repetitions for any change to be significant at alpha %g (see the notes).", c.Alpha)
	case n == 0 && (lost == 0 || c.allowMissing):
		return fmt.Sprintf("No regression (alpha %g, %d metrics compared).", c.Alpha, len(c.Metrics))
	case lost > 0 && !c.allowMissing && n == 0:
		return fmt.Sprintf("REGRESSION: the new run lacks %d datapath × rate step(s) the base measured.", lost)
	case lost > 0 && !c.allowMissing:
		return fmt.Sprintf("REGRESSION: %d metric(s) regressed, and the new run lacks %d datapath × rate step(s) the base measured.", n, lost)
	default:
		return fmt.Sprintf("REGRESSION: %d metric(s) regressed (significant at alpha %g and beyond threshold).", n, c.Alpha)
	}
}

// warningText joins a row's warnings.
func (m MetricComparison) warningText() string {
	return strings.Join(m.Warnings, "; ")
}

// WriteText writes the comparison as an aligned text table.
func (c *Comparison) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	fmt.Fprintf(ew, "base: %s (commit %s)\nnew:  %s (commit %s)\n\n", orUnknown(c.BaseID), orUnknown(c.BaseCommit), orUnknown(c.NewID), orUnknown(c.NewCommit))
	tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "datapath\trate\tmetric\tbase\tnew\tchange\ttest\tthreshold\tverdict")
	for _, m := range c.Metrics {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			m.Datapath, fmtRate(m.OfferedRPS), metricLabel(m.Metric),
			fmtValue(m.Metric, m.BaseMedian), fmtValue(m.Metric, m.NewMedian),
			m.fmtChange(), m.fmtTest(), m.thresholdText(), m.verdict())
	}
	tw.Flush()
	notes := c.notes()
	if len(notes) > 0 {
		fmt.Fprintln(ew)
		for _, n := range notes {
			fmt.Fprintln(ew, n)
		}
	}
	fmt.Fprintln(ew)
	fmt.Fprintln(ew, c.summaryLine())
	return ew.err
}

// notes lists missing steps and the distinct test warnings.
func (c *Comparison) notes() []string {
	var out []string
	for _, m := range c.Missing {
		if m.InBase {
			out = append(out, fmt.Sprintf("missing: %s at %s req/s is in the base run but not in the new one", m.Datapath, fmtRate(m.OfferedRPS)))
		} else {
			out = append(out, fmt.Sprintf("new: %s at %s req/s is only in the new run", m.Datapath, fmtRate(m.OfferedRPS)))
		}
	}
	seen := map[string]bool{}
	for _, m := range c.Metrics {
		for _, w := range m.Warnings {
			if !seen[w] {
				seen[w] = true
				out = append(out, "note: "+w)
			}
		}
	}
	return out
}

// WriteMarkdown writes the comparison as a GitHub-flavoured markdown
// table, for CI job summaries and comments.
func (c *Comparison) WriteMarkdown(w io.Writer) error {
	ew := &errWriter{w: w}
	icon := "✅"
	if c.Regressed() {
		icon = "❌"
	}
	fmt.Fprintf(ew, "## meshbench comparison\n\n%s %s\n\n", icon, c.summaryLine())
	fmt.Fprintf(ew, "- base: `%s` (commit `%s`)\n- new: `%s` (commit `%s`)\n\n", mdEscape(orUnknown(c.BaseID)), mdEscape(orUnknown(c.BaseCommit)), mdEscape(orUnknown(c.NewID)), mdEscape(orUnknown(c.NewCommit)))
	if len(c.Metrics) > 0 {
		fmt.Fprintln(ew, "| datapath | rate (req/s) | metric | base | new | change | test | threshold | verdict |")
		fmt.Fprintln(ew, "|---|---:|---|---:|---:|---:|---|---:|---|")
		for _, m := range c.Metrics {
			v := m.verdict()
			if m.Regression {
				v = "**" + v + "**"
			}
			fmt.Fprintf(ew, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				mdEscape(m.Datapath), fmtRate(m.OfferedRPS), metricLabel(m.Metric),
				fmtValue(m.Metric, m.BaseMedian), fmtValue(m.Metric, m.NewMedian),
				m.fmtChange(), m.fmtTest(), m.thresholdText(), v)
		}
	}
	if notes := c.notes(); len(notes) > 0 {
		fmt.Fprintln(ew)
		for _, n := range notes {
			fmt.Fprintf(ew, "- %s\n", mdEscape(n))
		}
	}
	fmt.Fprintf(ew, "\nMann-Whitney U test over repetitions (golang.org/x/perf/benchmath), alpha %g; `~` means no significant difference.\n", c.Alpha)
	return ew.err
}

// mdEscape keeps s from breaking a markdown table.
func mdEscape(s string) string {
	return strings.NewReplacer("|", "\\|", "\n", " ", "\r", " ").Replace(s)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// errWriter remembers the first write error so that formatting code can
// check once at the end.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}
