package reports

import (
	"math"
	"slices"

	"github.com/aclements/go-moremath/stats"
	"golang.org/x/perf/benchmath"
)

// The statistics the gate and the headline use. Why these:
//
// Repetitions are the unit of evidence: requests within one repetition
// share the machine's state and are not independent, so every test here
// compares per-repetition figures, never pooled requests.
//
// Per metric, the gate asks a one-sided question, "did it get worse?",
// with Welch's t-test on the logarithm of the per-repetition figures.
// Latencies and costs are positive and skewed, and changes to them are
// multiplicative (a 1.3× slower proxy), which the log scale makes
// additive and closer to normal. A t-test's p-value is not bounded below
// by the number of repetitions the way a rank test's is: with 5 against 5
// repetitions no rank test can give p below 1/252 ≈ 0.004, so after any
// control for ~40 tests nothing at all could be flagged. Outliers widen
// the t-test's variance, which makes it miss rather than cry wolf.
//
// Every flag must also pass a rank check: the Mann-Whitney U test
// (golang.org/x/perf/benchmath, as benchstat) at alpha, uncorrected, so a
// flag never rests on the normal model alone, and fewer than 4
// repetitions a side, where the U test cannot reach 0.05, never flag.

// worseP returns the one-sided p-value of "new is worse than base": the
// Welch t-test on log values (raw values when any is not positive), toward
// higher values when higher is false and lower values when it is true.
// testable is false when there is nothing to test: fewer than two values
// on a side, or both sides constant and equal (such a metric, say a
// success ratio of 100% throughout, carries no evidence either way and is
// left out of the multiple-comparison family rather than diluting it).
func worseP(base, new []float64, higher bool) (p float64, testable bool) {
	if len(base) < 2 || len(new) < 2 {
		return 1, false
	}
	b, n := logAll(base), logAll(new)
	if b == nil || n == nil {
		b, n = base, new
	}
	bs, ns := stats.Sample{Xs: b}, stats.Sample{Xs: n}
	if bs.Variance() == 0 && ns.Variance() == 0 {
		bm, nm := bs.Mean(), ns.Mean()
		switch {
		case bm == nm:
			return 1, false
		case (nm > bm) != higher:
			return 0, true // every repetition worse, without noise
		default:
			return 1, true
		}
	}
	alt := stats.LocationLess // base < new: worse when lower is better
	if higher {
		alt = stats.LocationGreater
	}
	r, err := stats.TwoSampleWelchTTest(bs, ns, alt)
	if err != nil || math.IsNaN(r.P) {
		return 1, false
	}
	return math.Min(1, math.Max(0, r.P)), true
}

// logAll returns the natural logarithms of v, or nil when any value is
// not positive.
func logAll(v []float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		if !(x > 0) {
			return nil
		}
		out[i] = math.Log(x)
	}
	return out
}

// rankTest returns the two-sided Mann-Whitney U test's p-value and
// benchmath's warnings (too few samples, for example).
func rankTest(base, new []float64, alpha float64) (p float64, warnings []string) {
	th := benchmath.DefaultThresholds
	th.CompareAlpha = alpha
	cmp := benchmath.AssumeNothing.Compare(benchmath.NewSample(base, &th), benchmath.NewSample(new, &th))
	for _, w := range cmp.Warnings {
		warnings = append(warnings, w.Error())
	}
	return cmp.P, warnings
}

// benjaminiHochberg returns the Benjamini-Hochberg adjusted p-values
// (q-values) of ps, in the same order: q_(i) = min over j ≥ i of
// m·p_(j)/j, capped at 1. Rejecting every test with q < alpha controls the
// false discovery rate at alpha for independent or positively dependent
// tests, and so, when nothing changed at all, the chance of any flag.
func benjaminiHochberg(ps []float64) []float64 {
	m := len(ps)
	idx := make([]int, m)
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case ps[a] < ps[b]:
			return -1
		case ps[a] > ps[b]:
			return 1
		}
		return 0
	})
	q := make([]float64, m)
	run := 1.0
	for k := m - 1; k >= 0; k-- {
		i := idx[k]
		run = math.Min(run, ps[i]*float64(m)/float64(k+1))
		q[i] = run
	}
	return q
}

// lowerSignificantly reports whether a is lower than b beyond chance over
// their repetitions: with at least 3 repetitions each, when every value of
// a is below every value of b (for 3 against 3 that happens by chance 1
// time in 20, one-sided), or when the Mann-Whitney U test finds the
// difference significant at alpha and a's median is lower.
func lowerSignificantly(a, b []float64, alpha float64) bool {
	if len(a) < 3 || len(b) < 3 {
		return false
	}
	if slices.Max(a) < slices.Min(b) {
		return true
	}
	p, _ := rankTest(a, b, alpha)
	return p < alpha && median(a) < median(b)
}
