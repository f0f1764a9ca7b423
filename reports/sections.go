package reports

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/meshbench/meshbench/harness/results"
)

// One builder per section of the page, in the order the template shows
// them; buildPage (html.go) assembles them.

// pageTitle names the report after the run's scenario.
func pageTitle(run *results.Run) string {
	title := "meshbench report"
	if name := scenarioName(run); name != "" {
		title += ": " + name
	}
	return title
}

// scenarioName returns the resolved scenario's name, if it has one.
func scenarioName(run *results.Run) string {
	if sc, ok := resolvedScenario(run); ok && sc.Name != "" {
		return sc.Name
	}
	return ""
}

// statusBanner says, for a run that did not finish ok, how it ended and
// that the report covers only what was measured; "" for an ok run.
func statusBanner(run *results.Run) string {
	var banner string
	switch run.Status {
	case results.StatusOK:
	case results.StatusFailed:
		banner = "This run FAILED"
	case results.StatusInterrupted:
		banner = "This run was INTERRUPTED"
	case results.StatusRunning:
		banner = "This run was still RUNNING when this report was made"
	default:
		banner = fmt.Sprintf("This run has status %q", run.Status)
	}
	if banner != "" {
		if run.Error != "" {
			banner += ": " + run.Error
		}
		banner += ". The report covers only the steps that were measured."
	}
	return banner
}

// runMeta is the header's key facts: run id, status, start, duration,
// step count and meshbench version.
func runMeta(run *results.Run) []kv {
	meta := []kv{{"Run", run.ID}, {"Status", run.Status}}
	if !run.Started.IsZero() {
		meta = append(meta, kv{"Started", run.Started.UTC().Format(time.RFC3339)})
	}
	if !run.Finished.IsZero() && !run.Started.IsZero() {
		meta = append(meta, kv{"Took", run.Finished.Sub(run.Started).Round(time.Second).String()})
	}
	meta = append(meta, kv{"Steps", fmt.Sprint(len(run.Steps))})
	if run.Environment.Commit != "" {
		meta = append(meta, kv{"meshbench", strings.TrimSpace(run.Environment.Version + " " + run.Environment.Commit)})
	}
	return meta
}

// proofWarning counts the steps whose proof of path failed, under the
// verdict; "" when every step's proof was verified.
func proofWarning(steps []results.Step) string {
	unverified := 0
	for _, s := range steps {
		if !s.Proof.Verified {
			unverified++
		}
	}
	if unverified == 0 {
		return ""
	}
	return fmt.Sprintf("The proof of path failed for %d of %d steps: the datapath's own counters did not account for the traffic (see Proof of path).", unverified, len(steps))
}

// summaryRows is the summary table: one row per datapath × rate with its
// medians, its ratios to the baseline at that rate and its proxy memory.
func summaryRows(m *model, data plotData) []summaryRow {
	exBy := data.Extrapolation.byDatapath()
	memBy := memoryByDatapath(data.Memory)
	var rows []summaryRow
	for _, s := range m.tableSummaries() {
		dp, rate := s.Datapath, s.OfferedRPS
		row := summaryRow{
			Datapath:     dp,
			Rate:         fmtRate(rate),
			Achieved:     fmtNum(s.AchievedRPS.Median),
			Success:      fmtPercent(s.SuccessRatio.Median),
			P50:          fmtNum(s.P50US.Median),
			P99:          fmtNum(s.P99US.Median),
			P50Ratio:     "—",
			P99Ratio:     "—",
			CPU:          fmtNum(s.CPUMicrosPerReq.Median),
			Segments:     fmtNum(s.SegmentsPerReq.Median),
			CtxSwitches:  fmtNum(s.CtxSwitchesPerReq.Median),
			Memory:       "—",
			Proof:        s.ProofVerified,
			ProofFigures: m.proofFigures(dp, rate),
		}
		row.Warn = warnings(s) != ""
		if b, ok := m.summary(baselineDatapath, rate); ok {
			if b.P50US.Median > 0 {
				row.P50Ratio = fmtRatio(s.P50US.Median / b.P50US.Median)
			}
			if b.P99US.Median > 0 {
				row.P99Ratio = fmtRatio(s.P99US.Median / b.P99US.Median)
			}
		}
		if er, ok := exBy[dp]; ok {
			switch {
			case er.Model == modelNone:
				row.Memory = "no proxy"
			case er.Measured:
				row.Memory = fmtBytes(er.PerProxyBytes)
			}
		} else if mr, ok := memBy[dp]; ok && mr.Proxies > 0 {
			row.Memory = fmtBytes(mr.ProxyPSS)
		} else if dp == baselineDatapath {
			row.Memory = "no proxy"
		}
		rows = append(rows, row)
	}
	return rows
}

// overheadRows builds the client-overhead table from the summaries and the
// steps of each datapath × rate.
func overheadRows(m *model) []overheadRow {
	var rows []overheadRow
	for _, s := range m.tableSummaries() {
		dp, rate := s.Datapath, s.OfferedRPS
		steps := m.steps[groupKey{dp, rate}]
		if len(steps) == 0 {
			continue
		}
		row := overheadRow{
			Datapath: dp, Rate: fmtRate(rate),
			AppP50: fmtNum(s.P50US.Median), AppP99: fmtNum(s.P99US.Median),
			KernelP50: "—", KernelP99: "—", OverP50: "—", OverP99: "—",
		}
		var stamped, successes, conns, opened int64
		var sent, lag50, lag99 []float64
		parts := map[string][]float64{}
		for _, st := range steps {
			stamped += st.KernelStamped
			successes += st.Successes
			conns = max(conns, int64(st.Client.Connections))
			opened = max(opened, st.Client.ConnectionsOpened)
			sent = append(sent, st.SentRPS)
			lag50 = append(lag50, st.Client.SendLagUS.P50)
			lag99 = append(lag99, st.Client.SendLagUS.P99)
			for k, l := range st.Client.OverheadPartsUS {
				parts[k] = append(parts[k], l.P50)
			}
		}
		if len(parts) > 0 {
			var ps []string
			for _, k := range overheadParts {
				ps = append(ps, fmtNum(results.NewSpread(parts[k]).Median))
			}
			row.Parts = strings.Join(ps, " / ")
		}
		if len(s.KernelP50US.Values) > 0 {
			row.KernelP50, row.KernelP99 = fmtNum(s.KernelP50US.Median), fmtNum(s.KernelP99US.Median)
			row.OverP50, row.OverP99 = fmtNum(s.OverheadP50US.Median), fmtNum(s.OverheadP99US.Median)
		} else {
			row.NoStamps = orDefault(noStampReasons[baseOf(dp)], "no kernel timestamps")
		}
		if successes > 0 {
			row.Stamped = fmtPercent(float64(stamped) / float64(successes))
		}
		row.SentRPS = fmtNum(results.NewSpread(sent).Median)
		row.SendLag = fmtNum(results.NewSpread(lag50).Median) + " / " + fmtNum(results.NewSpread(lag99).Median)
		if conns > 0 {
			row.Connections = fmt.Sprintf("%d of %d", opened, conns)
			row.ConnsWarn = opened > conns
		}
		rows = append(rows, row)
	}
	return rows
}

// overheadParts are the parts of the client overhead, in the order they
// happen (results.ClientRun.OverheadPartsUS).
var overheadParts = []string{"send_lag", "to_socket", "to_wire", "from_wire", "after_read"}

// evidenceFigures are the Evidence section's figures, each with its
// caption or the reason it is missing.
func evidenceFigures(r rendered) []figure {
	data := r.data
	costCaption := "CPU time (stacked by process role), TCP segments and context switches per request, summed over the testbed"
	if data.CostRateRPS > 0 {
		costCaption += ", at " + fmtRate(data.CostRateRPS) + " req/s (median of repetitions)"
	}
	costCaption += ". Extra segments and switches are where a proxy's latency comes from."
	return []figure{
		r.figure("fig-latency-spectrum", fileSpectrum, "Latency percentile spectrum",
			"Latency at each percentile, all repetitions merged, one panel per offered rate. The percentile axis is log-scaled in 1/(1−q), so the tail gets as much room as the median.",
			"No latency histograms in this run."),
		r.figure("fig-latency-vs-load", fileLatencyVsLoad, "Latency against offered load",
			"p50 (solid) and p99 (dashed) per datapath; bars span the fastest and slowest repetition.",
			"No latency summaries in this run."),
		r.figure("fig-throughput", fileThroughput, "Throughput",
			"Successful responses per second against the rate offered; points under the dashed line mean the datapath could not keep up or failed requests.",
			"No throughput data in this run."),
		r.figure("fig-cost", fileCost, "Per-request cost",
			costCaption,
			"No cost counters in this run."),
		r.figure("fig-memory", fileMemory, "Memory",
			"Measured at the end of each step (median over steps). PSS divides shared pages among the processes that share them; RSS counts them in full.",
			"No process memory was recorded in this run."),
		r.figure("fig-memory-extrapolation", fileExtrapolation, "Memory extrapolation",
			"Nodes × (per node + pods per node × per pod). Per pod: a sidecar's private memory (USS, with its Envoy child, if any), or what each pod adds inside a per-node process (afxdp: the AF_XDP socket on its veth, UMEM and rings). Per node: the pages a node's sidecars share (their binary: RSS − USS, once), or a per-node proxy's or forwarder's RSS less those per-pod shares; and the BPF programs and maps a node loads (kernel memory no process shows; a preallocated map counts in full). Results without USS fall back to PSS per proxy. Measured with this testbed's pods, connections and configuration: a proxy serving more of them may need more.",
			orDefault(data.Extrapolation.Note, "Nothing to extrapolate.")),
	}
}

// memoryRows is the memory table under the memory figure: one row per
// datapath with process data.
func memoryRows(m *model, mem []memoryRow) []memoryTableRow {
	var rows []memoryTableRow
	for _, mr := range mem {
		mdl := proxyModel(mr.Datapath, m.byDP[mr.Datapath])
		if mdl == modelNone {
			mdl = "no proxy"
		}
		row := memoryTableRow{
			Datapath:    mr.Datapath,
			Model:       mdl,
			Proxies:     fmtNum(mr.Proxies),
			ProxyRSS:    "—",
			ProxyPSS:    "—",
			Pods:        fmtNum(mr.Pods),
			PodPSS:      fmtBytes(mr.PodPSS),
			DatapathPSS: fmtBytes(mr.RolePSS[results.RoleDatapath]),
			ServerPSS:   fmtBytes(mr.RolePSS[results.RoleServer]),
			ClientPSS:   fmtBytes(mr.RolePSS[results.RoleClient]),
		}
		if mr.Proxies > 0 {
			row.ProxyRSS, row.ProxyPSS = fmtBytes(mr.ProxyRSS), fmtBytes(mr.ProxyPSS)
		}
		rows = append(rows, row)
	}
	return rows
}

// extrapolationTable is the table under the extrapolation figure: a header
// per cluster size and a row per datapath.
func extrapolationTable(ex extrapolation) (headers []string, rows []extrapolationTableRow) {
	for _, sc := range ex.Scales {
		headers = append(headers, fmt.Sprintf("%d nodes × %d pods", sc.Nodes, sc.PodsPerNode))
	}
	for _, er := range ex.Rows {
		row := extrapolationTableRow{Datapath: er.Datapath, Model: er.Model}
		switch {
		case er.Model == modelNone:
			row.Model, row.PerProxy, row.PerPod, row.PerNode, row.Counts = "no proxy", "—", "0", "0", "nothing: no proxy, no BPF"
		case er.Measured:
			row.PerProxy = fmtBytes(er.PerProxyBytes) + " " + er.Basis
			row.PerPod = fmtBytes(er.PerPodBytes)
			row.PerNode = fmtBytes(er.PerNodeBytes)
			if er.BPFPerNodeBytes > 0 {
				row.PerNode += " (BPF " + fmtBytes(er.BPFPerNodeBytes) + ")"
			}
			row.Counts = er.Counts
		default:
			row.PerProxy, row.PerPod, row.PerNode = "not measured", "?", "?"
		}
		for _, sc := range er.Scales {
			switch {
			case er.Model == modelUnknown:
				row.Cells = append(row.Cells, "?")
			case !er.Measured:
				row.Cells = append(row.Cells, fmt.Sprintf("%d proxies × ?", sc.Proxies))
			case er.Model == modelNone:
				row.Cells = append(row.Cells, "0")
			default:
				row.Cells = append(row.Cells, fmt.Sprintf("%s (%d proxies)", fmtBytes(sc.Bytes), sc.Proxies))
			}
		}
		rows = append(rows, row)
	}
	return headers, rows
}

// timelineFigures are the Timelines section: one figure per datapath with
// windows.
func timelineFigures(r rendered) []figure {
	var figs []figure
	for _, tl := range r.data.Timelines {
		figs = append(figs, r.figure("fig-timeline-"+safeName(tl.Datapath), timelineFile(tl.Datapath),
			"Timeline: "+tl.Datapath,
			"Success ratio and p99 per time window, median over repetitions, one line per offered rate. Shaded bands are the time a fault was active.",
			"No windows."))
	}
	return figs
}

// spreadRows is the spread table: each datapath × rate's median with its
// fastest and slowest repetition.
func spreadRows(m *model) []spreadRow {
	var rows []spreadRow
	for _, s := range m.tableSummaries() {
		dp, rate := s.Datapath, s.OfferedRPS
		rows = append(rows, spreadRow{
			Datapath:    dp,
			Rate:        fmtRate(rate),
			Reps:        fmt.Sprint(s.Repetitions),
			Achieved:    spread(s.AchievedRPS, fmtNum),
			Success:     spread(s.SuccessRatio, fmtPercent),
			P50:         spread(s.P50US, fmtNum),
			P90:         spread(s.P90US, fmtNum),
			P99:         spread(s.P99US, fmtNum),
			P999:        spread(s.P999US, fmtNum),
			Max:         spread(s.MaxUS, fmtNum),
			CPU:         spread(s.CPUMicrosPerReq, fmtNum),
			Segments:    spread(s.SegmentsPerReq, fmtNum),
			CtxSwitches: spread(s.CtxSwitchesPerReq, fmtNum),
		})
	}
	return rows
}

// spread formats a Spread as "median [min–max]".
func spread(s results.Spread, f func(float64) string) string {
	if len(s.Values) == 0 && s.Median == 0 && s.Min == 0 && s.Max == 0 {
		return "—"
	}
	if s.Min == s.Max || len(s.Values) == 1 {
		return f(s.Median)
	}
	return fmt.Sprintf("%s [%s–%s]", f(s.Median), f(s.Min), f(s.Max))
}

// proofRows is the proof-of-path table: one row per step, in run order,
// with its counters, rules, warm-up verdict and datapath metrics.
func proofRows(steps []results.Step) []proofRow {
	var rows []proofRow
	for _, s := range steps {
		var counters []string
		for _, k := range sortedKeys(s.Proof.Counters) {
			counters = append(counters, fmt.Sprintf("%s=%d", k, s.Proof.Counters[k]))
		}
		pr := proofRow{
			Datapath:     s.Datapath,
			Rate:         fmtRate(s.OfferedRPS),
			Rep:          fmt.Sprint(s.Repetition),
			Source:       s.Proof.Source,
			Counters:     strings.Join(counters, " "),
			Verified:     s.Proof.Verified,
			Inconclusive: s.Proof.Inconclusive,
			Metrics:      metricsText(s.DatapathMetrics),
			Warmup:       "—",
		}
		if len(s.Proof.Checks) == 0 {
			pr.Detail = s.Proof.Detail
		}
		for _, c := range s.Proof.Checks {
			pr.Checks = append(pr.Checks, checkRow{OK: c.OK, Name: c.Name, Figure: c.Figure, Want: c.Want, Why: c.Why, Detail: c.Detail})
		}
		if w := s.Proof.Warmup; w != nil {
			pr.Warmup = "✗"
			if w.Verified {
				pr.Warmup = "✓"
			}
		}
		rows = append(rows, pr)
	}
	return rows
}

// metricsText renders datapath metrics as "name=value" pairs.
func metricsText(m map[string]float64) string {
	var out []string
	for _, k := range sortedKeys(m) {
		out = append(out, fmt.Sprintf("%s=%s", k, fmtNum(m[k])))
	}
	return strings.Join(out, " ")
}

// errorRows is the errors table: one row per step that had request errors,
// a step error or an interruption.
func errorRows(steps []results.Step) []errorRow {
	var rows []errorRow
	for _, s := range steps {
		var errs []string
		for _, k := range sortedKeys(s.Errors) {
			errs = append(errs, fmt.Sprintf("%s: %d", k, s.Errors[k]))
		}
		if f := s.FailureLatencyUS; f != nil && len(s.Errors) > 0 {
			errs = append(errs, fmt.Sprintf("failed requests took p50 %s µs, p99 %s µs", fmtNum(f.P50), fmtNum(f.P99)))
		}
		if s.Error != "" {
			errs = append(errs, "step error: "+s.Error)
		}
		if s.Interrupted {
			errs = append(errs, "interrupted")
		}
		if len(errs) > 0 {
			rows = append(rows, errorRow{
				Datapath: s.Datapath, Rate: fmtRate(s.OfferedRPS), Rep: fmt.Sprint(s.Repetition),
				Errors: strings.Join(errs, "; "),
			})
		}
	}
	return rows
}

// faultRows is the faults table: one row per fault injected in a step.
// Times are printed to the resolution they were measured at (the step's
// window width).
func faultRows(steps []results.Step) []faultRow {
	var rows []faultRow
	for _, s := range steps {
		for _, f := range s.Faults {
			res := f.ResolutionS
			if res <= 0 {
				res = s.WindowS
			}
			secs := func(v float64) string { return fmtSeconds(v, res) }
			row := faultRow{
				Datapath: s.Datapath, Rate: fmtRate(s.OfferedRPS), Rep: fmt.Sprint(s.Repetition),
				Name: f.Name, Fault: f.Fault + " " + f.Selector, Impl: f.Implementation,
				Window: fmt.Sprintf("%s–%s", fmtSeconds(f.StartS, 0.1), fmtSeconds(f.EndS, 0.1)),
				Errors: fmt.Sprint(f.Errors),
				Detect: secs(f.DetectS), Recover: secs(f.RecoverS), Error: f.Error,
			}
			if f.SharedErrors > 0 {
				row.Errors += fmt.Sprintf(" (+%d shared with %s)", f.SharedErrors, strings.Join(f.SharedWith, ", "))
			}
			switch a := f.Activity; {
			case a == nil:
				row.Evidence = "not read"
			case !a.Active && f.AllowInactive:
				row.Evidence = "inactive (allowed): " + a.Detail
			case !a.Active:
				row.Evidence = "INACTIVE: " + a.Detail
				row.Inactive = true
			default:
				row.Evidence = a.Detail
			}
			if r := f.Readiness; r != nil {
				row.Readiness = fmt.Sprintf("out %s after the kill, back %s after the restart (probe every %s, %d/%d)",
					fmtSeconds(r.NotReadyS, 0.01), fmtSeconds(r.ReadyS, 0.01), fmtSeconds(r.PeriodS, r.PeriodS), r.FailureThreshold, r.SuccessThreshold)
			}
			rows = append(rows, row)
		}
	}
	return rows
}

// fmtSeconds writes v seconds with as many decimals as res (a resolution
// in seconds) warrants; "never" for a negative v.
func fmtSeconds(v, res float64) string {
	if v < 0 {
		return "never"
	}
	decimals := 0
	if res > 0 {
		decimals = max(0, min(3, int(math.Ceil(-math.Log10(res)-1e-9))))
	}
	return strconv.FormatFloat(v, 'f', decimals, 64) + " s"
}

// calibrationTable is the calibration step's figures, the load client's
// floor; nil when the run has no calibration.
func calibrationTable(c *results.Step) []kv {
	if c == nil {
		return nil
	}
	return []kv{
		{"Offered", fmtRate(c.OfferedRPS) + " req/s"},
		{"Achieved", fmtNum(c.AchievedRPS) + " req/s"},
		{"Success", fmtPercent(c.SuccessRatio)},
		{"p50", fmtNum(c.LatencyUS.P50) + " µs"},
		{"p90", fmtNum(c.LatencyUS.P90) + " µs"},
		{"p99", fmtNum(c.LatencyUS.P99) + " µs"},
		{"p99.9", fmtNum(c.LatencyUS.P999) + " µs"},
		{"max", fmtNum(c.LatencyUS.Max) + " µs"},
	}
}

// environmentTable is the machine and build the run measured on.
func environmentTable(e results.Environment) []kv {
	return []kv{
		{"Hostname", e.Hostname}, {"Kernel", e.Kernel}, {"OS", e.OS}, {"Arch", e.Arch},
		{"CPU", e.CPUModel}, {"Cores", fmt.Sprint(e.Cores)}, {"Memory", fmt.Sprintf("%d MiB", e.MemoryMiB)},
		{"Go", e.GoVersion}, {"meshbench commit", e.Commit}, {"meshbench version", e.Version},
		{"Provider", e.Provider},
	}
}

// scenarioText is the Scenario section: the scenario file's path and
// source as the run copied them, and the resolved scenario ("" when the
// run has none).
func scenarioText(run *results.Run) (path, source, resolved string) {
	if len(run.Scenario.Resolved) > 0 {
		resolved = string(run.Scenario.Resolved)
	}
	return run.Scenario.Path, run.Scenario.Source, resolved
}
