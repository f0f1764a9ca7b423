package reports

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/meshbench/meshbench/harness/results"
)

// Thresholds under which a verdict warns about a step.
const (
	warnSuccessRatio = 0.999 // below this, say how many requests failed
	warnAchieved     = 0.95  // achieved / offered below this: saturated
)

// verdictLines returns the headline (which datapath wins where, when there
// is a choice) and one sentence per datapath at the reference rate, all
// generated from the numbers.
func verdictLines(m *model, ex extrapolation) (headline, lines []string) {
	ref := m.refRate()
	exBy := ex.byDatapath()
	base, hasBase := m.summary(baselineDatapath, ref)
	for _, dp := range m.datapaths {
		r, ok := m.rateFor(dp, ref)
		if !ok {
			continue
		}
		s, ok := m.summary(dp, r)
		if !ok {
			continue
		}
		var b strings.Builder
		cmpBase := hasBase && r == ref && dp != baselineDatapath &&
			base.P50US.Median > 0 && base.P99US.Median > 0
		if !cmpBase && dp != baselineDatapath && hasBase && r != ref {
			// Compare at dp's own rate when none was measured there.
			if bb, ok := m.summary(baselineDatapath, r); ok && bb.P50US.Median > 0 && bb.P99US.Median > 0 {
				base, cmpBase = bb, true
			}
		}
		switch {
		case dp == baselineDatapath:
			writeServes(&b, dp+" (the floor)", s, r)
		case cmpBase:
			writeAgainstBase(&b, dp, s, base, r)
		default:
			writeServes(&b, dp, s, r)
			b.WriteString(" (no “" + baselineDatapath + "” measurement to compare with)")
		}
		if er, ok := exBy[dp]; ok && er.Model != modelNone && er.Measured {
			fmt.Fprintf(&b, "; %s per proxy (%s)", fmtBytes(er.PerProxyBytes), er.Basis)
			if len(er.Scales) > 0 {
				sc := er.Scales[len(er.Scales)-1]
				fmt.Fprintf(&b, ", %s at %d nodes × %d pods", fmtBytes(sc.Bytes), sc.Nodes, sc.PodsPerNode)
			}
		}
		b.WriteString(".")
		if note, ok := datapathNotes[baseOf(dp)]; ok {
			b.WriteString(" " + note)
		}
		b.WriteString(warnings(s))
		lines = append(lines, b.String())
	}
	headline = headlineLines(m, ref, ex)
	return headline, lines
}

// writeAgainstBase writes the sentence for datapath dp measured against
// the baseline at the same rate: its latency ratios with both latencies,
// then its CPU, TCP segments and context switches per request as ratios
// where both runs counted them.
func writeAgainstBase(b *strings.Builder, dp string, s, base results.Summary, rate float64) {
	r50 := s.P50US.Median / base.P50US.Median
	r99 := s.P99US.Median / base.P99US.Median
	if r50 >= 1 && r99 >= 1 {
		fmt.Fprintf(b, "%s adds %s p50 and %s p99 over %s at %s req/s",
			dp, fmtRatio(r50), fmtRatio(r99), baselineDatapath, fmtRate(rate))
	} else {
		fmt.Fprintf(b, "%s runs at %s the p50 and %s the p99 of %s at %s req/s",
			dp, fmtRatio(r50), fmtRatio(r99), baselineDatapath, fmtRate(rate))
	}
	fmt.Fprintf(b, " (p50 %s vs %s µs, p99 %s vs %s µs)",
		fmtNum(s.P50US.Median), fmtNum(base.P50US.Median), fmtNum(s.P99US.Median), fmtNum(base.P99US.Median))
	var costs []string
	if c, bc := s.CPUMicrosPerReq.Median, base.CPUMicrosPerReq.Median; c > 0 && bc > 0 {
		costs = append(costs, fmt.Sprintf("%s the CPU per request (%s vs %s µs)", fmtRatio(c/bc), fmtNum(c), fmtNum(bc)))
	}
	if sg, bs := s.SegmentsPerReq.Median, base.SegmentsPerReq.Median; sg > 0 && bs > 0 {
		costs = append(costs, fmt.Sprintf("%s the TCP segments (%s vs %s)", fmtRatio(sg/bs), fmtNum(sg), fmtNum(bs)))
	}
	if cs, bc := s.CtxSwitchesPerReq.Median, base.CtxSwitchesPerReq.Median; cs > 0 && bc > 0 {
		costs = append(costs, fmt.Sprintf("%s the context switches (%s vs %s)", fmtRatio(cs/bc), fmtNum(cs), fmtNum(bc)))
	}
	if len(costs) > 0 {
		b.WriteString(", and uses " + joinAnd(costs))
	}
}

// writeServes writes the sentence for a datapath measured on its own:
// "NAME serves p50 … and p99 … at RATE req/s", with its CPU and TCP
// segments per request when the run counted them.
func writeServes(b *strings.Builder, name string, s results.Summary, rate float64) {
	fmt.Fprintf(b, "%s serves p50 %s µs and p99 %s µs at %s req/s",
		name, fmtNum(s.P50US.Median), fmtNum(s.P99US.Median), fmtRate(rate))
	if c := s.CPUMicrosPerReq.Median; c > 0 {
		fmt.Fprintf(b, ", spending %s µs CPU and %s TCP segments per request",
			fmtNum(c), fmtNum(s.SegmentsPerReq.Median))
	}
}

// warnings returns sentences flagging a summary's failures, or "".
func warnings(s results.Summary) string {
	var w []string
	if sr := s.SuccessRatio.Median; sr < warnSuccessRatio {
		w = append(w, fmt.Sprintf("Only %s of requests succeeded.", fmtPercent(sr)))
	}
	if a := s.AchievedRPS.Median; s.OfferedRPS > 0 && a < warnAchieved*s.OfferedRPS {
		w = append(w, fmt.Sprintf("It achieved only %s of %s req/s offered (saturated).", fmtNum(a), fmtRate(s.OfferedRPS)))
	}
	if !s.ProofVerified {
		w = append(w, "Its proof of path was NOT verified: treat these numbers with suspicion.")
	}
	if len(w) == 0 {
		return ""
	}
	return " " + strings.Join(w, " ")
}

func joinAnd(parts []string) string {
	switch len(parts) {
	case 0:
		return ""
	case 1:
		return parts[0]
	default:
		return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
	}
}

// headlineLines names the best mesh datapath by tail latency, CPU and
// memory when the run measured more than one. A datapath is named best by
// latency or CPU only when its repetitions are significantly below every
// other mesh's (see lowerSignificantly); otherwise the line names the tie.
func headlineLines(m *model, ref float64, ex extrapolation) []string {
	if len(m.datapaths) == 0 {
		return []string{"No step was measured: there is nothing to compare."}
	}
	var meshes []string
	for _, dp := range m.datapaths {
		if dp == baselineDatapath {
			continue
		}
		if _, ok := m.summary(dp, ref); ok {
			meshes = append(meshes, dp)
		}
	}
	if len(meshes) == 0 {
		if m.hasBaseline() {
			return []string{"Only the “" + baselineDatapath + "” datapath was measured: this run is a floor measurement with no mesh datapath to compare."}
		}
		return nil
	}
	if len(meshes) < 2 {
		return nil
	}
	base, hasBase := m.summary(baselineDatapath, ref)
	var out []string
	// describe names a datapath with its figure and, when the baseline
	// has one, the figure's ratio to it.
	describe := func(metric func(results.Summary) results.Spread, unit string) func(string, float64) string {
		return func(dp string, v float64) string {
			t := fmt.Sprintf("%s (%s%s µs", dp, unit, fmtNum(v))
			if b := metric(base).Median; hasBase && b > 0 {
				t += ", " + fmtRatio(v/b) + " " + baselineDatapath
			}
			return t + ")"
		}
	}
	p99 := func(s results.Summary) results.Spread { return s.P99US }
	if line := rankLine(m, meshes, ref, p99, fmt.Sprintf("Lowest tail latency of the meshes at %s req/s", fmtRate(ref)),
		describe(p99, "p99 ")); line != "" {
		out = append(out, line)
	}
	cpu := func(s results.Summary) results.Spread { return s.CPUMicrosPerReq }
	if line := rankLine(m, meshes, ref, cpu, "Lowest CPU per request of the meshes", describe(cpu, "")); line != "" {
		out = append(out, line)
	}
	type mem struct {
		dp    string
		bytes float64
		sc    scaleCost
	}
	var mems []mem
	for _, r := range ex.Rows {
		if r.Model == modelNone || !r.Measured || len(r.Scales) == 0 {
			continue
		}
		last := r.Scales[len(r.Scales)-1]
		mems = append(mems, mem{r.Datapath, last.Bytes, last})
	}
	if len(mems) >= 2 {
		slices.SortStableFunc(mems, func(a, b mem) int { return cmp.Compare(a.bytes, b.bytes) })
		a, b := mems[0], mems[1]
		at := fmt.Sprintf("at %d nodes × %d pods", a.sc.Nodes, a.sc.PodsPerNode)
		if b.bytes <= a.bytes*(1+memoryTie) {
			// A proxy's memory varies by about this much between pods and
			// runs: closer than that is no difference.
			out = append(out, fmt.Sprintf("Datapath memory %s: a tie between %s (%s) and %s (%s), within %.0f%%.",
				at, a.dp, fmtBytes(a.bytes), b.dp, fmtBytes(b.bytes), memoryTie*100))
		} else {
			out = append(out, fmt.Sprintf("Smallest datapath memory %s: %s (%s; next %s, %s).", at, a.dp, fmtBytes(a.bytes), b.dp, fmtBytes(b.bytes)))
		}
	}
	return out
}

// memoryTie is how close two extrapolated memory totals may be and still
// tie: the spread of one proxy's RSS across the pods of one run (32–35 MiB
// for the builtin sidecar).
const memoryTie = 0.10

// rankLine is the headline's sentence for one figure: the mesh with the
// lowest median at rate ref, when its repetitions are significantly below
// every other mesh's, else the meshes it ties with. describe formats a
// mesh and its median. It is "" when no mesh has the figure.
func rankLine(m *model, meshes []string, ref float64, get func(results.Summary) results.Spread, title string, describe func(dp string, v float64) string) string {
	type cand struct {
		dp     string
		spread results.Spread
	}
	var cs []cand
	for _, dp := range meshes {
		s, _ := m.summary(dp, ref)
		if sp := get(s); sp.Median > 0 {
			cs = append(cs, cand{dp, sp})
		}
	}
	if len(cs) == 0 {
		return ""
	}
	// Lowest median first; ties keep the run's order.
	slices.SortStableFunc(cs, func(a, b cand) int { return cmp.Compare(a.spread.Median, b.spread.Median) })
	best := cs[0]
	tied := []cand{best}
	reps := len(best.spread.Values)
	for _, c := range cs[1:] {
		if !lowerSignificantly(best.spread.Values, c.spread.Values, DefaultAlpha) {
			tied = append(tied, c)
			reps = min(reps, len(c.spread.Values))
		}
	}
	if len(tied) == 1 {
		return title + ": " + describe(best.dp, best.spread.Median) + "."
	}
	var names []string
	for _, c := range tied {
		names = append(names, describe(c.dp, c.spread.Median))
	}
	why := "their repetitions do not differ significantly"
	if reps < 3 {
		why = fmt.Sprintf("%d repetition(s) are too few to tell them apart (3 or more are needed)", reps)
	}
	return fmt.Sprintf("%s: a tie between %s: %s.", title, joinAnd(names), why)
}
