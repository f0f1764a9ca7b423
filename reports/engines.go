package reports

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/meshbench/meshbench/datapaths/catalog"
	"github.com/meshbench/meshbench/harness/results"
)

// The "Proxy engines compared" section: the datapaths whose label names
// their proxy engine ("sidecar/builtin", "sidecar/haproxy"), seat by seat,
// when a seat was measured with two engines or more.

// proxyFigures are one step's figures of its proxies: its datapath-role
// processes, each with its descendants.
type proxyFigures struct {
	// CPUPerReq is the proxies' CPU time per request of the step, in µs;
	// ChildCPUPerReq the part of it spent in engine children.
	CPUPerReq, ChildCPUPerReq float64
	// PSSPerProxy is the proxies' mean PSS in bytes, each with its
	// descendants (the whole seat); ChildPSSPerProxy the engine children's
	// PSS per proxy.
	PSSPerProxy, ChildPSSPerProxy float64
	// Children counts the engine children.
	Children int
}

// stepProxyFigures computes s's proxyFigures; false when s recorded no
// proxy or no request.
func stepProxyFigures(s results.Step) (proxyFigures, bool) {
	var f proxyFigures
	var proxies int
	var cpu, childCPU, pss, childPSS float64
	for _, p := range s.Processes {
		if p.Role != results.RoleDatapath {
			continue
		}
		proxies++
		cpu += p.CPUSeconds
		pss += float64(p.PSSBytes)
		for _, d := range p.Descendants {
			if isEngineChild(p, d) {
				f.Children++
				childCPU += d.CPUSeconds
				childPSS += float64(d.PSSBytes)
			}
		}
	}
	if proxies == 0 || s.Requests <= 0 {
		return proxyFigures{}, false
	}
	n := float64(s.Requests)
	f.CPUPerReq, f.ChildCPUPerReq = cpu*1e6/n, childCPU*1e6/n
	f.PSSPerProxy, f.ChildPSSPerProxy = pss/float64(proxies), childPSS/float64(proxies)
	return f, true
}

// isEngineChild reports whether d, a descendant of proxy p, is its
// engine's child: a program other than meshbench's own.
func isEngineChild(p results.Process, d results.Descendant) bool {
	return d.Comm != "" && d.Comm != p.Name && d.Comm != wrapperComm
}

// engineGroup is one engine-labelled datapath at one rate, over its
// repetitions.
type engineGroup struct {
	datapath, engine string
	rate             float64
	sum              results.Summary
	// addedP50 and addedP99 are its medians less the baseline's at the
	// same rate; hasAdded is false without a baseline there.
	addedP50, addedP99 float64
	hasAdded           bool
	// fig holds the medians of its steps' proxyFigures; measured is false
	// when no step had them, children when none had an engine child.
	fig                proxyFigures
	measured, children bool
}

// engineGroupAt returns dp's group at rate; false when dp has no summary
// there.
func (m *model) engineGroupAt(dp string, rate float64) (engineGroup, bool) {
	s, ok := m.summary(dp, rate)
	if !ok {
		return engineGroup{}, false
	}
	_, engine := catalog.Split(dp)
	g := engineGroup{datapath: dp, engine: engine, rate: rate, sum: s}
	if b, ok := m.summary(baselineDatapath, rate); ok {
		g.addedP50, g.addedP99, g.hasAdded = s.P50US.Median-b.P50US.Median, s.P99US.Median-b.P99US.Median, true
	}
	var cpu, childCPU, pss, childPSS []float64
	for _, st := range m.steps[groupKey{dp, rate}] {
		f, ok := stepProxyFigures(st)
		if !ok {
			continue
		}
		cpu, childCPU = append(cpu, f.CPUPerReq), append(childCPU, f.ChildCPUPerReq)
		pss, childPSS = append(pss, f.PSSPerProxy), append(childPSS, f.ChildPSSPerProxy)
		g.children = g.children || f.Children > 0
	}
	if len(cpu) > 0 {
		g.measured = true
		g.fig = proxyFigures{CPUPerReq: median(cpu), ChildCPUPerReq: median(childCPU), PSSPerProxy: median(pss), ChildPSSPerProxy: median(childPSS)}
	}
	return g, true
}

// engineSeats is the engines table: per seat (a proxied datapath, in run
// order) the rows of its engine-labelled datapaths, rate by rate, each
// with its ratios to referenceEngine's row at that rate. It is nil unless
// some seat was measured with two engines or more.
func engineSeats(m *model) []engineSeat {
	var seats []string
	labels := map[string][]string{}
	for _, dp := range m.datapaths {
		seat, engine := catalog.Split(dp)
		if engine == "" || !slices.Contains(catalog.Proxied(), seat) {
			continue
		}
		if labels[seat] == nil {
			seats = append(seats, seat)
		}
		labels[seat] = append(labels[seat], dp)
	}
	if !slices.ContainsFunc(seats, func(s string) bool { return len(labels[s]) >= 2 }) {
		return nil
	}
	var out []engineSeat
	for _, seat := range seats {
		es := engineSeat{Seat: seat}
		for _, rate := range m.rates {
			var groups []engineGroup
			var ref *engineGroup
			for _, dp := range labels[seat] {
				if g, ok := m.engineGroupAt(dp, rate); ok {
					groups = append(groups, g)
				}
			}
			for i := range groups {
				if groups[i].engine == referenceEngine {
					ref = &groups[i]
				}
			}
			for _, g := range groups {
				es.Rows = append(es.Rows, engineTableRow(g, ref))
			}
		}
		out = append(out, es)
	}
	return out
}

// engineTableRow formats g, with its ratios to ref (nil: no reference
// engine in its seat at its rate).
func engineTableRow(g engineGroup, ref *engineGroup) engineRow {
	row := engineRow{
		Seat: baseOf(g.datapath), Datapath: g.datapath, Rate: fmtRate(g.rate),
		P50: spread(g.sum.P50US, fmtNum), P99: spread(g.sum.P99US, fmtNum),
		AddedP50: "—", AddedP99: "—", CPU: "—", ChildCPU: "—", PSS: "—", ChildPSS: "—",
	}
	if g.hasAdded {
		row.AddedP50, row.AddedP99 = fmtNum(g.addedP50), fmtNum(g.addedP99)
	}
	if g.measured {
		row.CPU, row.PSS = fmtNum(g.fig.CPUPerReq), fmtBytes(g.fig.PSSPerProxy)
		if g.children {
			row.ChildCPU, row.ChildPSS = fmtNum(g.fig.ChildCPUPerReq), fmtBytes(g.fig.ChildPSSPerProxy)
		}
	}
	row.Ratios = []engineRatio{{Text: "—"}, {Text: "—"}, {Text: "—"}}
	if ref == nil || g.engine == referenceEngine {
		return row
	}
	goal := g.engine == goalEngine
	// The ratio is judged as printed, to two decimals.
	ratio := func(i int, ok bool, v, refV, most float64) {
		if !ok || refV <= 0 {
			return
		}
		r := v / refV
		row.Ratios[i] = engineRatio{Text: fmt.Sprintf("%.2f×", r), Miss: goal && math.Round(r*100)/100 > most}
		row.Warn = row.Warn || row.Ratios[i].Miss
	}
	ratio(0, g.hasAdded && ref.hasAdded, g.addedP50, ref.addedP50, engineGoals.AddedP50)
	ratio(1, g.measured && ref.measured, g.fig.CPUPerReq, ref.fig.CPUPerReq, engineGoals.CPU)
	ratio(2, g.measured && ref.measured, g.fig.PSSPerProxy, ref.fig.PSSPerProxy, engineGoals.PSS)
	return row
}

// engineGoalText states engineGoals under the engines table.
func engineGoalText() string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) + "×" }
	return fmt.Sprintf("Goal for %s against %s in the same seat: added p50 at most %s, CPU per request at most %s, PSS per proxy at most %s (no higher); a ratio that misses it is marked.",
		goalEngine, referenceEngine, f(engineGoals.AddedP50), f(engineGoals.CPU), f(engineGoals.PSS))
}

// engineNotesRows lists, per datapath, the settings its proxy engine did
// not apply as configured (Step.EngineNotes over its steps, distinct and
// sorted): every datapath of the engines table, then any other that has
// notes, in run order.
func engineNotesRows(m *model, seats []engineSeat) []engineNotesRow {
	var dps []string
	for _, es := range seats {
		for _, r := range es.Rows {
			if !slices.Contains(dps, r.Datapath) {
				dps = append(dps, r.Datapath)
			}
		}
	}
	var rows []engineNotesRow
	for _, dp := range m.datapaths {
		row := engineNotesRow{Datapath: dp, Text: "none"}
		tally := 0.0
		for _, s := range m.byDP[dp] {
			row.Notes = append(row.Notes, s.EngineNotes...)
			for k, v := range s.DatapathMetrics {
				if strings.HasSuffix(k, "_unrendered_notes") {
					tally = max(tally, v)
				}
			}
		}
		slices.Sort(row.Notes)
		row.Notes = slices.Compact(row.Notes)
		if len(row.Notes) == 0 && tally > 0 {
			// Results from before the notes were recorded kept their count.
			row.Text = fmt.Sprintf("%s, not listed in these results (recorded before the notes were)", fmtNum(tally))
		}
		if len(row.Notes) > 0 || tally > 0 || slices.Contains(dps, dp) {
			rows = append(rows, row)
		}
	}
	slices.SortStableFunc(rows, func(a, b engineNotesRow) int {
		return rank(dps, a.Datapath) - rank(dps, b.Datapath)
	})
	return rows
}

// rank is the place of s in list, or len(list) when it is not there.
func rank(list []string, s string) int {
	if i := slices.Index(list, s); i >= 0 {
		return i
	}
	return len(list)
}
