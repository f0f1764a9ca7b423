package reports

import (
	"math"
	"slices"

	"github.com/meshbench/meshbench/harness/results"
)

// The plot data is computed apart from drawing so that tests can check the
// numbers (golden JSON) without comparing PNG bytes.

// point is one plotted point; YMin and YMax, when set, are the extremes over
// repetitions.
type point struct {
	X    float64 `json:"x"`
	Y    float64 `json:"y"`
	YMin float64 `json:"y_min,omitempty"`
	YMax float64 `json:"y_max,omitempty"`
}

// series is one line of a plot.
type series struct {
	Name     string  `json:"name"`
	Datapath string  `json:"datapath"`
	Points   []point `json:"points"`
}

// spectrumPanel is the latency percentile spectrum at one offered rate.
type spectrumPanel struct {
	RateRPS float64  `json:"rate_rps"`
	Series  []series `json:"series"`
}

// memoryRow is the memory of one datapath's testbed, from Step.Processes:
// medians over the steps that recorded processes.
type memoryRow struct {
	Datapath string `json:"datapath"`
	// Samples is the number of steps with process data.
	Samples int `json:"samples"`
	// Proxies is the number of datapath-role processes per step.
	Proxies float64 `json:"proxies"`
	// ProxyRSS, ProxyPSS and ProxyUSS are per datapath-role process
	// (ProxyUSS is 0 in results that did not record it).
	ProxyRSS float64 `json:"proxy_rss_bytes"`
	ProxyPSS float64 `json:"proxy_pss_bytes"`
	ProxyUSS float64 `json:"proxy_uss_bytes"`
	// Pods is the number of pods with processes; PodPSS is the PSS of all
	// processes in a pod (app and sidecar), per pod.
	Pods   float64 `json:"pods"`
	PodPSS float64 `json:"pod_pss_bytes"`
	// RolePSS and RoleRSS are totals over the testbed, by process role.
	RolePSS map[string]float64 `json:"role_pss_bytes"`
	RoleRSS map[string]float64 `json:"role_rss_bytes"`
}

// scaleCost is one datapath's memory at one cluster size: Nodes ×
// (PerNodeBytes + PodsPerNode × PerPodBytes) of its row.
type scaleCost struct {
	Nodes       int     `json:"nodes"`
	PodsPerNode int     `json:"pods_per_node"`
	Proxies     int64   `json:"proxies"`
	Bytes       float64 `json:"bytes"`
}

// extrapolationRow is one datapath's memory extrapolated to larger
// clusters: what each pod and each node needs, from its measured proxy
// memory and its footprint (results.Footprint).
type extrapolationRow struct {
	Datapath string `json:"datapath"`
	Model    string `json:"model"`
	// Measured is false when the datapath runs proxies but none was
	// measured; its costs are then unknown, not zero.
	Measured bool `json:"measured"`
	// PerProxyBytes is a datapath process's measured memory (median), of
	// Basis "PSS" or "RSS".
	PerProxyBytes float64 `json:"per_proxy_bytes"`
	Basis         string  `json:"basis"`
	// PerPodBytes is what every pod adds: its sidecar (per-pod model), or
	// its share inside the node's process (afxdp's AF_XDP socket).
	PerPodBytes float64 `json:"per_pod_bytes"`
	// PerNodeBytes is what every node needs whatever its pods: its proxy
	// or forwarder less the per-pod shares measured inside it, and
	// BPFPerNodeBytes of BPF programs and maps (kernel memory).
	PerNodeBytes    float64 `json:"per_node_bytes"`
	BPFPerNodeBytes float64 `json:"bpf_per_node_bytes"`
	// Counts says what the two terms count: the datapath's own account
	// (Footprint.Basis), or what the report could not count.
	Counts string      `json:"counts"`
	Scales []scaleCost `json:"scales"`
}

// extrapolation is the memory extrapolation table; Note says why it is
// empty when it is.
type extrapolation struct {
	Scales []Scale            `json:"scales"`
	Rows   []extrapolationRow `json:"rows"`
	Note   string             `json:"note,omitempty"`
}

// costRow is one datapath's per-request cost at one rate: medians over
// repetitions.
type costRow struct {
	Datapath    string  `json:"datapath"`
	RateRPS     float64 `json:"rate_rps"`
	ClientCPU   float64 `json:"client_cpu_us"`
	ServerCPU   float64 `json:"server_cpu_us"`
	DatapathCPU float64 `json:"datapath_cpu_us"`
	// OtherCPU is the total less the three roles (other processes).
	OtherCPU    float64 `json:"other_cpu_us"`
	TotalCPU    float64 `json:"total_cpu_us"`
	Segments    float64 `json:"segments"`
	CtxSwitches float64 `json:"context_switches"`
}

// faultSpan is a fault's active interval on a step's timeline, in seconds
// from the start of the measured window (from Step.Faults; the first
// repetition's times stand for all, since every repetition runs the same
// timeline).
type faultSpan struct {
	Name   string  `json:"name"`
	StartS float64 `json:"start_s"`
	EndS   float64 `json:"end_s"`
}

// timeline is one datapath's windows over time: one series per rate, each
// window's median over repetitions with its min and max (so that a
// disturbance in one repetition still shows).
type timeline struct {
	Datapath     string      `json:"datapath"`
	Faults       []faultSpan `json:"faults"`
	SuccessRatio []series    `json:"success_ratio"`
	P99          []series    `json:"p99_us"`
}

// plotData is everything the plots draw.
type plotData struct {
	Spectrum      []spectrumPanel `json:"latency_spectrum"`
	LatencyVsLoad []series        `json:"latency_vs_load"`
	Throughput    []series        `json:"throughput"`
	Memory        []memoryRow     `json:"memory"`
	Extrapolation extrapolation   `json:"memory_extrapolation"`
	CostRateRPS   float64         `json:"cost_rate_rps"`
	Cost          []costRow       `json:"cost"`
	Timelines     []timeline      `json:"timelines"`
}

func buildPlotData(m *model, scales []Scale) plotData {
	d := plotData{
		Spectrum:      spectrumData(m),
		LatencyVsLoad: latencyVsLoadData(m),
		Throughput:    throughputData(m),
		Memory:        memoryData(m),
		CostRateRPS:   m.refRate(),
		Timelines:     timelineData(m),
	}
	d.Extrapolation = extrapolationData(m, d.Memory, scales)
	d.Cost = costData(m, d.CostRateRPS)
	return d
}

// mergedHistogram sums the sparse histograms of steps bucket by bucket.
func mergedHistogram(steps []results.Step) []results.Bucket {
	counts := map[int64]int64{}
	for _, s := range steps {
		for _, b := range s.Histogram.Buckets {
			if b.Count > 0 {
				counts[b.UpperUS] += b.Count
			}
		}
	}
	out := make([]results.Bucket, 0, len(counts))
	for _, le := range sortedKeys(counts) {
		out = append(out, results.Bucket{UpperUS: le, Count: counts[le]})
	}
	return out
}

// valueAtQuantile returns the upper bound of the bucket holding quantile q
// of a sorted histogram with total count total.
func valueAtQuantile(buckets []results.Bucket, total int64, q float64) float64 {
	target := int64(math.Ceil(q * float64(total)))
	target = max(target, 1)
	var cum int64
	for _, b := range buckets {
		cum += b.Count
		if cum >= target {
			return float64(b.UpperUS)
		}
	}
	if len(buckets) == 0 {
		return 0
	}
	return float64(buckets[len(buckets)-1].UpperUS)
}

// spectrumPointsPerDecade sets the resolution of the spectrum along its
// 1/(1-q) axis.
const spectrumPointsPerDecade = 20

// spectrum returns the percentile spectrum of a histogram at points
// x = 1/(1-q) spaced evenly on a log axis, from x = 1 (q = 0, the minimum)
// to the finest quantile the sample count supports (1-q >= 1/count).
func spectrum(buckets []results.Bucket) []point {
	var total int64
	for _, b := range buckets {
		total += b.Count
	}
	if total == 0 {
		return nil
	}
	var pts []point
	for k := 0; k <= 6*spectrumPointsPerDecade; k++ {
		x := math.Pow(10, float64(k)/spectrumPointsPerDecade)
		if x > float64(total) {
			break
		}
		q := 1 - 1/x
		pts = append(pts, point{X: x, Y: valueAtQuantile(buckets, total, q)})
	}
	return pts
}

func spectrumData(m *model) []spectrumPanel {
	var panels []spectrumPanel
	for _, r := range m.rates {
		p := spectrumPanel{RateRPS: r}
		for _, dp := range m.datapaths {
			pts := spectrum(mergedHistogram(m.steps[groupKey{dp, r}]))
			if len(pts) == 0 {
				continue
			}
			p.Series = append(p.Series, series{Name: dp, Datapath: dp, Points: pts})
		}
		if len(p.Series) > 0 {
			panels = append(panels, p)
		}
	}
	return panels
}

// spreadPoint returns a point for a Spread at x.
func spreadPoint(x float64, s results.Spread) point {
	return point{X: x, Y: finite(s.Median), YMin: finite(s.Min), YMax: finite(s.Max)}
}

func latencyVsLoadData(m *model) []series {
	var out []series
	for _, dp := range m.datapaths {
		p50 := series{Name: dp + " p50", Datapath: dp}
		p99 := series{Name: dp + " p99", Datapath: dp}
		for _, r := range m.ratesOf(dp) {
			s, ok := m.summary(dp, r)
			if !ok {
				continue
			}
			if s.P50US.Median > 0 {
				p50.Points = append(p50.Points, spreadPoint(r, s.P50US))
			}
			if s.P99US.Median > 0 {
				p99.Points = append(p99.Points, spreadPoint(r, s.P99US))
			}
		}
		for _, s := range []series{p50, p99} {
			if len(s.Points) > 0 {
				out = append(out, s)
			}
		}
	}
	return out
}

func throughputData(m *model) []series {
	var out []series
	for _, dp := range m.datapaths {
		s := series{Name: dp, Datapath: dp}
		for _, r := range m.ratesOf(dp) {
			if sum, ok := m.summary(dp, r); ok {
				s.Points = append(s.Points, spreadPoint(r, sum.AchievedRPS))
			}
		}
		if len(s.Points) > 0 {
			out = append(out, s)
		}
	}
	return out
}

// processMemory is the memory of one step's processes.
type processMemory struct {
	proxies                      int
	proxyRSS, proxyPSS, proxyUSS float64 // means per datapath process
	pods                         int
	podPSS                       float64 // mean per pod
	rolePSS, roleRSS             map[string]float64
}

func stepMemory(s results.Step) processMemory {
	pm := processMemory{rolePSS: map[string]float64{}, roleRSS: map[string]float64{}}
	pods := map[string]float64{}
	for _, p := range s.Processes {
		role := p.Role
		if role == "" {
			role = "other"
		}
		pm.rolePSS[role] += float64(p.PSSBytes)
		pm.roleRSS[role] += float64(p.RSSBytes)
		if p.Role == results.RoleDatapath {
			pm.proxies++
			pm.proxyRSS += float64(p.RSSBytes)
			pm.proxyPSS += float64(p.PSSBytes)
			pm.proxyUSS += float64(p.USSBytes)
		}
		if p.Pod != "" {
			pods[p.Pod] += float64(p.PSSBytes)
		}
	}
	if pm.proxies > 0 {
		pm.proxyRSS /= float64(pm.proxies)
		pm.proxyPSS /= float64(pm.proxies)
		pm.proxyUSS /= float64(pm.proxies)
	}
	pm.pods = len(pods)
	for _, v := range pods {
		pm.podPSS += v
	}
	if pm.pods > 0 {
		pm.podPSS /= float64(pm.pods)
	}
	return pm
}

func memoryData(m *model) []memoryRow {
	var out []memoryRow
	for _, dp := range m.datapaths {
		var mems []processMemory
		for _, s := range m.byDP[dp] {
			if len(s.Processes) > 0 {
				mems = append(mems, stepMemory(s))
			}
		}
		if len(mems) == 0 {
			continue
		}
		pick := func(f func(processMemory) float64) float64 {
			v := make([]float64, len(mems))
			for i, pm := range mems {
				v[i] = f(pm)
			}
			return median(v)
		}
		row := memoryRow{
			Datapath: dp,
			Samples:  len(mems),
			Proxies:  pick(func(pm processMemory) float64 { return float64(pm.proxies) }),
			ProxyRSS: pick(func(pm processMemory) float64 { return pm.proxyRSS }),
			ProxyPSS: pick(func(pm processMemory) float64 { return pm.proxyPSS }),
			ProxyUSS: pick(func(pm processMemory) float64 { return pm.proxyUSS }),
			Pods:     pick(func(pm processMemory) float64 { return float64(pm.pods) }),
			PodPSS:   pick(func(pm processMemory) float64 { return pm.podPSS }),
			RolePSS:  map[string]float64{},
			RoleRSS:  map[string]float64{},
		}
		roles := map[string]bool{}
		for _, pm := range mems {
			for r := range pm.rolePSS {
				roles[r] = true
			}
		}
		for r := range roles {
			row.RolePSS[r] = pick(func(pm processMemory) float64 { return pm.rolePSS[r] })
			row.RoleRSS[r] = pick(func(pm processMemory) float64 { return pm.roleRSS[r] })
		}
		out = append(out, row)
	}
	return out
}

// Notes shown instead of an extrapolation.
const (
	noteOnlyNone = "Nothing to extrapolate: this run measured only the “" + baselineDatapath + "” datapath, which runs no proxy."
	noteNoMemory = "Nothing to extrapolate: no proxy memory was measured (the steps recorded no processes)."
)

func extrapolationData(m *model, mem []memoryRow, scales []Scale) extrapolation {
	ex := extrapolation{Scales: scales}
	memBy := memoryByDatapath(mem)
	measured := 0
	proxied := 0
	for _, dp := range m.datapaths {
		row := extrapolationRow{Datapath: dp, Model: proxyModel(dp, m.byDP[dp])}
		if row.Model == modelNone {
			row.Measured = true
		} else {
			proxied++
			if mr, ok := memBy[dp]; ok && mr.Proxies > 0 {
				row.Measured = true
				row.PerProxyBytes, row.Basis = mr.ProxyPSS, "PSS"
				if row.PerProxyBytes <= 0 {
					row.PerProxyBytes, row.Basis = mr.ProxyRSS, "RSS"
				}
				measured++
				row.splitTerms(mr, footprintOf(m.byDP[dp]))
			}
		}
		for _, sc := range scales {
			c := scaleCost{Nodes: sc.Nodes, PodsPerNode: sc.PodsPerNode}
			switch row.Model {
			case modelPerPod:
				c.Proxies = int64(sc.Nodes) * int64(sc.PodsPerNode)
			case modelPerNode:
				c.Proxies = int64(sc.Nodes)
			}
			if row.Measured {
				c.Bytes = float64(sc.Nodes) * (row.PerNodeBytes + float64(sc.PodsPerNode)*row.PerPodBytes)
			}
			row.Scales = append(row.Scales, c)
		}
		ex.Rows = append(ex.Rows, row)
	}
	switch {
	case len(m.datapaths) == 0:
		ex.Note = noteNoMemory
	case proxied == 0:
		ex.Note = noteOnlyNone
	case measured == 0:
		ex.Note = noteNoMemory
	}
	if ex.Note != "" {
		ex.Rows = nil
	}
	return ex
}

// footprint is a datapath's results.Footprint, medians over its steps.
type footprint struct {
	steps              int     // steps that recorded one
	bpfPerNode         float64 // BPFBytes / BPFCopies
	podBytes, podsHeld float64
	basis              string
}

// footprintOf summarises the footprints of steps (zero when none has one).
func footprintOf(steps []results.Step) footprint {
	var bpf, pod, held []float64
	var fp footprint
	for _, s := range steps {
		f := s.Footprint
		if f == nil {
			continue
		}
		fp.steps++
		if f.BPFCopies > 0 {
			bpf = append(bpf, float64(f.BPFBytes)/float64(f.BPFCopies))
		}
		pod = append(pod, float64(f.PodBytes))
		held = append(held, float64(f.PodUnits))
		if f.Basis != "" {
			fp.basis = f.Basis
		}
	}
	if fp.steps > 0 {
		if len(bpf) > 0 {
			fp.bpfPerNode = median(bpf)
		}
		fp.podBytes, fp.podsHeld = median(pod), median(held)
	}
	return fp
}

// splitTerms sets the row's per-pod and per-node terms from the measured
// proxy memory mr and the datapath's footprint fp.
//
// Process memory: a sidecar is paid per pod with its private memory (USS),
// and the pages the sidecars share (RSS − USS: mostly their binary, shared
// here with every process that runs the same binary) once per node, as a
// node's sidecars share them; results without USS fall back to PSS, which
// splits the shared pages among the testbed's processes, apps included. A
// per-node process is paid per node with its RSS, for it shares its pages
// with no other of its kind on the node.
//
// Per-pod memory inside a per-node process (afxdp's sockets of the
// testbed's pods) moves from the per-node term to the per-pod one, and
// every node pays for its BPF programs and maps.
func (row *extrapolationRow) splitTerms(mr memoryRow, fp footprint) {
	row.BPFPerNodeBytes = fp.bpfPerNode
	row.PerNodeBytes = fp.bpfPerNode
	var method string
	perPod := row.Model == modelPerPod
	switch {
	case mr.ProxyUSS > 0 && perPod:
		row.PerPodBytes = mr.ProxyUSS
		row.PerNodeBytes += max(0, mr.ProxyRSS-mr.ProxyUSS)
		method = "process memory: each sidecar's private memory (USS) per pod, and the pages the sidecars share (RSS − USS) once per node"
	case perPod:
		row.PerPodBytes = row.PerProxyBytes
		method = "process memory: " + row.Basis + " per proxy (these results record no USS)"
	default:
		rss := mr.ProxyRSS
		if rss <= 0 {
			rss = row.PerProxyBytes
		}
		row.PerNodeBytes += max(0, rss-fp.podBytes*fp.podsHeld/mr.Proxies)
		row.PerPodBytes = fp.podBytes
		method = "process memory: the node process's RSS (no other process of its kind on a node shares its pages)"
	}
	switch {
	case fp.steps == 0:
		row.Counts = method + "; no footprint in these results, so BPF programs and maps and any per-pod memory inside a per-node process are not counted"
	case fp.basis != "":
		row.Counts = method + "; " + fp.basis
	default:
		row.Counts = method
	}
}

// memoryByDatapath indexes memory rows by their datapath.
func memoryByDatapath(rows []memoryRow) map[string]memoryRow {
	by := make(map[string]memoryRow, len(rows))
	for _, r := range rows {
		by[r.Datapath] = r
	}
	return by
}

// byDatapath indexes the extrapolation's rows by their datapath.
func (ex extrapolation) byDatapath() map[string]extrapolationRow {
	by := make(map[string]extrapolationRow, len(ex.Rows))
	for _, r := range ex.Rows {
		by[r.Datapath] = r
	}
	return by
}

func costData(m *model, ref float64) []costRow {
	var out []costRow
	for _, dp := range m.datapaths {
		r, ok := m.rateFor(dp, ref)
		if !ok {
			continue
		}
		steps := m.steps[groupKey{dp, r}]
		if len(steps) == 0 {
			continue
		}
		pick := func(f func(results.Step) float64) float64 {
			v := make([]float64, len(steps))
			for i, s := range steps {
				v[i] = finite(f(s))
			}
			return median(v)
		}
		row := costRow{
			Datapath:    dp,
			RateRPS:     r,
			ClientCPU:   pick(func(s results.Step) float64 { return s.Cost.ClientCPUMicrosPerReq }),
			ServerCPU:   pick(func(s results.Step) float64 { return s.Cost.ServerCPUMicrosPerReq }),
			DatapathCPU: pick(func(s results.Step) float64 { return s.Cost.DatapathCPUMicrosPerReq }),
			TotalCPU:    pick(func(s results.Step) float64 { return s.Cost.CPUMicrosPerRequest }),
			Segments:    pick(func(s results.Step) float64 { return s.Cost.SegmentsPerRequest }),
			CtxSwitches: pick(func(s results.Step) float64 { return s.Cost.ContextSwitchesPerReq }),
		}
		row.OtherCPU = max(0, row.TotalCPU-row.ClientCPU-row.ServerCPU-row.DatapathCPU)
		if row.TotalCPU == 0 && row.Segments == 0 && row.CtxSwitches == 0 {
			continue
		}
		out = append(out, row)
	}
	return out
}

func timelineData(m *model) []timeline {
	var out []timeline
	for _, dp := range m.datapaths {
		tl := timeline{Datapath: dp, Faults: []faultSpan{}}
		seen := map[string]bool{}
		for _, r := range m.ratesOf(dp) {
			steps := m.steps[groupKey{dp, r}]
			for _, s := range steps {
				for _, f := range s.Faults {
					name := f.Name
					if name == "" {
						name = f.Fault
					}
					if !seen[name] {
						seen[name] = true
						tl.Faults = append(tl.Faults, faultSpan{Name: name, StartS: f.StartS, EndS: f.EndS})
					}
				}
			}
			n := 0
			for _, s := range steps {
				n = max(n, len(s.Windows))
			}
			if n == 0 {
				continue
			}
			name := fmtRate(r) + " req/s"
			sr := series{Name: name, Datapath: dp}
			p99 := series{Name: name, Datapath: dp}
			for i := range n {
				var start float64
				var ratios, tails []float64
				found := false
				for _, s := range steps {
					if i >= len(s.Windows) {
						continue
					}
					w := s.Windows[i]
					if !found {
						start, found = w.StartS, true
					}
					if w.Requests > 0 {
						ratios = append(ratios, finite(w.SuccessRatio))
						tails = append(tails, finite(w.P99US))
					}
				}
				if len(ratios) == 0 {
					continue
				}
				sr.Points = append(sr.Points, spreadPoint(start, results.NewSpread(ratios)))
				p99.Points = append(p99.Points, spreadPoint(start, results.NewSpread(tails)))
			}
			if len(sr.Points) > 0 {
				tl.SuccessRatio = append(tl.SuccessRatio, sr)
				tl.P99 = append(tl.P99, p99)
			}
		}
		if len(tl.SuccessRatio) > 0 {
			out = append(out, tl)
		}
	}
	return out
}

// datapathsWith returns the datapaths, in run order, for which has is true.
func datapathsWith(m *model, has func(dp string) bool) []string {
	return slices.DeleteFunc(slices.Clone(m.datapaths), func(dp string) bool { return !has(dp) })
}
