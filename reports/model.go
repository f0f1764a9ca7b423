package reports

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/meshbench/meshbench/harness/results"
)

// groupKey identifies one datapath × offered rate.
type groupKey struct {
	Datapath string
	Rate     float64
}

// model indexes a run's steps and summaries by datapath and rate. It is
// built once per report and never mutates the run.
type model struct {
	run *results.Run
	// datapaths in the order the run measured them.
	datapaths []string
	// rates offered by any datapath, ascending.
	rates     []float64
	summaries map[groupKey]results.Summary
	steps     map[groupKey][]results.Step
	byDP      map[string][]results.Step
}

func newModel(run *results.Run) *model {
	m := &model{
		run:       run,
		summaries: map[groupKey]results.Summary{},
		steps:     map[groupKey][]results.Step{},
		byDP:      map[string][]results.Step{},
	}
	seenDP := map[string]bool{}
	seenRate := map[float64]bool{}
	addKey := func(dp string, rate float64) {
		if !seenDP[dp] {
			seenDP[dp] = true
			m.datapaths = append(m.datapaths, dp)
		}
		if !seenRate[rate] {
			seenRate[rate] = true
			m.rates = append(m.rates, rate)
		}
	}
	for _, s := range run.Steps {
		k := groupKey{s.Datapath, s.OfferedRPS}
		addKey(k.Datapath, k.Rate)
		m.steps[k] = append(m.steps[k], s)
		m.byDP[s.Datapath] = append(m.byDP[s.Datapath], s)
	}
	sums := run.Summaries
	if len(sums) == 0 && len(run.Steps) > 0 {
		sums = results.Summarize(run.Steps)
	}
	for _, s := range sums {
		k := groupKey{s.Datapath, s.OfferedRPS}
		addKey(k.Datapath, k.Rate)
		if _, dup := m.summaries[k]; !dup {
			m.summaries[k] = s
		}
	}
	slices.Sort(m.rates)
	return m
}

// ratesOf returns the rates datapath dp was measured at, ascending.
func (m *model) ratesOf(dp string) []float64 {
	var out []float64
	for _, r := range m.rates {
		if _, ok := m.summaries[groupKey{dp, r}]; ok {
			out = append(out, r)
		} else if len(m.steps[groupKey{dp, r}]) > 0 {
			out = append(out, r)
		}
	}
	return out
}

// summary returns the summary of dp at rate.
func (m *model) summary(dp string, rate float64) (results.Summary, bool) {
	s, ok := m.summaries[groupKey{dp, rate}]
	return s, ok
}

// tableSummaries returns the summary of every datapath × rate, datapaths
// in run order and each one's rates ascending: the rows of the report's
// per-rate tables.
func (m *model) tableSummaries() []results.Summary {
	var out []results.Summary
	for _, dp := range m.datapaths {
		for _, r := range m.ratesOf(dp) {
			if s, ok := m.summary(dp, r); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// refRate is the rate the one-rate views (cost, verdict) use: the highest
// rate every datapath was measured at, or else the highest rate of all.
func (m *model) refRate() float64 {
	for i := len(m.rates) - 1; i >= 0; i-- {
		r := m.rates[i]
		all := true
		for _, dp := range m.datapaths {
			if _, ok := m.summaries[groupKey{dp, r}]; !ok {
				all = false
				break
			}
		}
		if all {
			return r
		}
	}
	if len(m.rates) == 0 {
		return 0
	}
	return m.rates[len(m.rates)-1]
}

// rateFor returns rate if dp was measured there, else dp's highest rate.
func (m *model) rateFor(dp string, rate float64) (float64, bool) {
	if _, ok := m.summaries[groupKey{dp, rate}]; ok {
		return rate, true
	}
	rs := m.ratesOf(dp)
	if len(rs) == 0 {
		return 0, false
	}
	return rs[len(rs)-1], true
}

// hasBaseline reports whether the run measured the baseline datapath.
func (m *model) hasBaseline() bool {
	return slices.Contains(m.datapaths, baselineDatapath)
}

// median returns the median of v (the mean of the middle two for an even
// count), or 0 for an empty slice.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// finite returns v, or 0 when v is NaN or infinite, so that JSON encoding
// and plotting never see them.
func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

// fmtRate formats an offered rate in requests per second.
func fmtRate(r float64) string {
	return strconv.FormatFloat(r, 'f', -1, 64)
}

// fmtNum formats v with about three significant digits.
func fmtNum(v float64) string {
	a := math.Abs(v)
	switch {
	case v == math.Trunc(v) && a < 1e15:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

// fmtBytes formats a byte count in MiB or GiB.
func fmtBytes(b float64) string {
	const mib = 1 << 20
	const gib = 1 << 30
	switch {
	case b >= 100*gib:
		return fmt.Sprintf("%.0f GiB", b/gib)
	case b >= gib:
		return fmt.Sprintf("%.1f GiB", b/gib)
	case b >= 10*mib:
		return fmt.Sprintf("%.0f MiB", b/mib)
	case b >= mib/10:
		return fmt.Sprintf("%.1f MiB", b/mib)
	case b > 0:
		return fmt.Sprintf("%.0f KiB", b/1024)
	default:
		return "0"
	}
}

// fmtRatio formats a ratio such as 2.1×.
func fmtRatio(r float64) string {
	switch {
	case r >= 10:
		return fmt.Sprintf("%.0f×", r)
	case fmt.Sprintf("%.1f", r) == "1.0":
		// Near parity one decimal hides the difference.
		return fmt.Sprintf("%.2f×", r)
	default:
		return fmt.Sprintf("%.1f×", r)
	}
}

// fmtPercent formats a 0..1 ratio as a percentage with enough digits to
// tell 99.9% from 100%.
func fmtPercent(r float64) string {
	switch {
	case r >= 1:
		return "100%"
	case r >= 0.99:
		return fmt.Sprintf("%.2f%%", r*100)
	default:
		return fmt.Sprintf("%.1f%%", r*100)
	}
}

// sortedKeys returns the keys of m in order.
func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// proofFigures returns the proof's figures of dp at rate, for the summary
// table: those of the first repetition whose proof failed, or else of the
// repetition with the median count of successes.
func (m *model) proofFigures(dp string, rate float64) string {
	steps := m.steps[groupKey{dp, rate}]
	if len(steps) == 0 {
		return ""
	}
	pick := -1
	for i, s := range steps {
		if !s.Proof.Verified {
			pick = i
			break
		}
	}
	if pick < 0 {
		idx := make([]int, len(steps))
		for i := range idx {
			idx[i] = i
		}
		slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(steps[a].Successes, steps[b].Successes) })
		pick = idx[len(idx)/2]
	}
	var figs []string
	for _, c := range steps[pick].Proof.Checks {
		figs = append(figs, c.Figure)
	}
	return strings.Join(figs, ", ")
}
