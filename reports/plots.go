package reports

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Figure file names in the output directory.
const (
	fileSpectrum      = "latency-spectrum.png"
	fileLatencyVsLoad = "latency-vs-load.png"
	fileThroughput    = "throughput.png"
	fileMemory        = "memory.png"
	fileExtrapolation = "memory-extrapolation.png"
	fileCost          = "cost.png"
)

// timelineFile names the chaos timeline figure of datapath dp.
func timelineFile(dp string) string { return "timeline-" + safeName(dp) + ".png" }

// safeName keeps letters, digits, '-' and '_' of s, for file names.
func safeName(s string) string {
	b := []byte(s)
	out := b[:0]
	for _, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			out = append(out, c)
		default:
			out = append(out, '_')
		}
	}
	if len(out) == 0 {
		return "_"
	}
	return string(out)
}

// roleOrder stacks the process roles, bottom to top.
var roleOrder = []string{"client", "server", "datapath", "other"}

// Colors of the process roles and of fault bands.
var (
	roleColors = map[string]color.RGBA{
		"client":   {R: 0x99, G: 0x99, B: 0x99, A: 0xff},
		"server":   {R: 0x6b, G: 0xae, B: 0xd6, A: 0xff},
		"datapath": {R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
		"other":    {R: 0xdd, G: 0xdd, B: 0xaa, A: 0xff},
	}
	faultColor = color.RGBA{R: 0xff, G: 0xcc, B: 0xcc, A: 0xff}
)

// lighter mixes c with white.
func lighter(c color.Color) color.Color {
	r, g, b, _ := c.RGBA()
	mix := func(v uint32) uint8 { return uint8((v>>8)/2 + 0x80) }
	return color.RGBA{R: mix(r), G: mix(g), B: mix(b), A: 0xff}
}

// render draws plots tiled in rows and columns onto a w × h PNG. Nil plots
// leave their tile empty. A panic inside gonum/plot (it panics on some
// degenerate ranges) becomes an error: a report never crashes on odd data.
func render(rows [][]*plot.Plot, w, h vg.Length) (png []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			png, err = nil, fmt.Errorf("draw plot: %v", r)
		}
	}()
	if len(rows) == 0 || len(rows[0]) == 0 {
		return nil, nil
	}
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{
		Rows: len(rows), Cols: len(rows[0]),
		PadX: vg.Millimeter * 6, PadY: vg.Millimeter * 6,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2,
		PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 4,
	}
	canvases := plot.Align(rows, tiles, dc)
	for i, row := range rows {
		for j, p := range row {
			if p != nil {
				p.Draw(canvases[i][j])
			}
		}
	}
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("encode png: %w", err)
	}
	return buf.Bytes(), nil
}

func newPlot(title, xlabel, ylabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xlabel
	p.Y.Label.Text = ylabel
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	return p
}

// kLabel formats a tick value, with k for thousands.
func kLabel(v float64) string {
	if v >= 1000 && math.Mod(v, 1000) == 0 {
		return strconv.FormatFloat(v/1000, 'f', -1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// ticks125 labels 1, 2 and 5 of each decade of a log axis (minor ticks at
// the other digits), so that latency axes spanning less than a decade
// still carry labels.
type ticks125 struct{}

// Ticks implements plot.Ticker.
func (ticks125) Ticks(lo, hi float64) []plot.Tick {
	if lo <= 0 || hi <= 0 || hi < lo {
		return nil
	}
	var ticks []plot.Tick
	labelled := 0
	for e := math.Floor(math.Log10(lo)); math.Pow(10, e) <= hi; e++ {
		base := math.Pow(10, e)
		for d := 1; d <= 9; d++ {
			v := float64(d) * base
			if v < lo*(1-1e-9) || v > hi*(1+1e-9) {
				continue
			}
			t := plot.Tick{Value: v}
			if d == 1 || d == 2 || d == 5 {
				t.Label = kLabel(v)
				labelled++
			}
			ticks = append(ticks, t)
		}
	}
	if labelled < 2 {
		// Less than a decade: plain evenly spaced ticks read better.
		ticks = plot.DefaultTicks{}.Ticks(lo, hi)
		for i := range ticks {
			if ticks[i].Label != "" {
				ticks[i].Label = kLabel(ticks[i].Value)
			}
		}
	}
	return ticks
}

// percentileTicks labels a 1/(1-q) axis with percentiles.
type percentileTicks struct{}

// Ticks implements plot.Ticker.
func (percentileTicks) Ticks(lo, hi float64) []plot.Tick {
	labels := []struct {
		x     float64
		label string
	}{
		{1, "0%"}, {2, "50%"}, {10, "90%"}, {100, "99%"}, {1e3, "99.9%"},
		{1e4, "99.99%"}, {1e5, "99.999%"}, {1e6, "99.9999%"},
	}
	var ticks []plot.Tick
	for _, l := range labels {
		if l.x >= lo*(1-1e-9) && l.x <= hi*(1+1e-9) {
			ticks = append(ticks, plot.Tick{Value: l.x, Label: l.label})
		}
	}
	return ticks
}

// logRange sets a log axis to cover values (ignoring non-positive ones)
// with some margin; false when there is nothing positive to show.
func logRange(a *plot.Axis, values []float64) bool {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range values {
		if v > 0 && !math.IsInf(v, 0) {
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	if math.IsInf(lo, 0) {
		return false
	}
	a.Scale = plot.LogScale{}
	a.Tick.Marker = ticks125{}
	a.Min, a.Max = lo/1.15, hi*1.15
	return true
}

// headroom raises a linear y axis that starts at 0 so that bars end below
// the legend.
func headroom(p *plot.Plot, factor float64) {
	p.Y.Min = 0
	if p.Y.Max <= 0 {
		p.Y.Max = 1
	}
	p.Y.Max *= factor
}

func lineStyle(c color.Color, dashed bool) draw.LineStyle {
	ls := draw.LineStyle{Color: c, Width: vg.Points(1.6)}
	if dashed {
		ls.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
	}
	return ls
}

func xys(pts []point) plotter.XYs {
	out := make(plotter.XYs, len(pts))
	for i, p := range pts {
		out[i] = plotter.XY{X: p.X, Y: p.Y}
	}
	return out
}

// errorBars returns min–max error bars for pts; for a log axis (positive)
// a non-positive minimum collapses to the point itself.
type errorPoints struct {
	plotter.XYs
	plotter.YErrors
}

func errorBars(pts []point, c color.Color, positive bool) (*plotter.YErrorBars, error) {
	ep := errorPoints{XYs: xys(pts), YErrors: make(plotter.YErrors, len(pts))}
	any := false
	for i, p := range pts {
		lo, hi := p.Y-p.YMin, p.YMax-p.Y
		if p.YMin == 0 && p.YMax == 0 {
			lo, hi = 0, 0
		}
		if positive && p.YMin <= 0 {
			lo = 0
		}
		lo, hi = max(lo, 0), max(hi, 0)
		if lo > 0 || hi > 0 {
			any = true
		}
		ep.YErrors[i] = struct{ Low, High float64 }{lo, hi}
	}
	if !any {
		return nil, nil
	}
	eb, err := plotter.NewYErrorBars(ep)
	if err != nil {
		return nil, err
	}
	eb.LineStyle = lineStyle(c, false)
	eb.LineStyle.Width = vg.Points(1)
	eb.CapWidth = vg.Points(6)
	return eb, nil
}

// addLine adds a line with point markers, and error bars when pts carry
// them, to p.
func addLine(p *plot.Plot, name string, pts []point, c color.Color, dashed, positive bool) error {
	line, scatter, err := plotter.NewLinePoints(xys(pts))
	if err != nil {
		return err
	}
	line.LineStyle = lineStyle(c, dashed)
	scatter.GlyphStyle.Color = c
	scatter.GlyphStyle.Radius = vg.Points(2.5)
	scatter.GlyphStyle.Shape = draw.CircleGlyph{}
	p.Add(line, scatter)
	if eb, err := errorBars(pts, c, positive); err != nil {
		return err
	} else if eb != nil {
		p.Add(eb)
	}
	p.Legend.Add(name, line, scatter)
	return nil
}

func drawSpectrum(panels []spectrumPanel, pal palette) ([]byte, error) {
	if len(panels) == 0 {
		return nil, nil
	}
	cols := min(len(panels), 2)
	nrows := (len(panels) + cols - 1) / cols
	rows := make([][]*plot.Plot, nrows)
	for i := range rows {
		rows[i] = make([]*plot.Plot, cols)
	}
	for i, pan := range panels {
		p := newPlot(fmt.Sprintf("Latency spectrum at %s req/s", fmtRate(pan.RateRPS)), "percentile", "latency (µs)")
		var ys []float64
		maxX := 10.0
		for _, s := range pan.Series {
			line, err := plotter.NewLine(xys(s.Points))
			if err != nil {
				return nil, err
			}
			line.LineStyle = lineStyle(pal.of(s.Datapath), false)
			line.StepStyle = plotter.PostStep
			p.Add(line)
			p.Legend.Add(s.Name, line)
			for _, pt := range s.Points {
				ys = append(ys, pt.Y)
				maxX = max(maxX, pt.X)
			}
		}
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = percentileTicks{}
		p.X.Min, p.X.Max = 1, maxX
		logRange(&p.Y, ys)
		rows[i/cols][i%cols] = p
	}
	width := 10 * vg.Inch
	if cols > 1 {
		width = 11.5 * vg.Inch
	}
	return render(rows, width, vg.Length(nrows)*4.2*vg.Inch)
}

func drawLatencyVsLoad(ss []series, pal palette) ([]byte, error) {
	if len(ss) == 0 {
		return nil, nil
	}
	p := newPlot("Latency against offered load (median, min–max over repetitions)", "offered load (req/s)", "latency (µs)")
	var ys []float64
	for _, s := range ss {
		dashed := len(s.Name) > 4 && s.Name[len(s.Name)-4:] == " p99"
		if err := addLine(p, s.Name, s.Points, pal.of(s.Datapath), dashed, true); err != nil {
			return nil, err
		}
		for _, pt := range s.Points {
			ys = append(ys, pt.Y, pt.YMin, pt.YMax)
		}
	}
	if logRange(&p.Y, ys) {
		p.Y.Max *= 1.6 // room for the legend
	}
	padX(&p.X, ss)
	return render([][]*plot.Plot{{p}}, 10*vg.Inch, 4.5*vg.Inch)
}

// padX widens a linear x axis so single points are not drawn on its edge.
func padX(a *plot.Axis, ss []series) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range ss {
		for _, pt := range s.Points {
			lo, hi = min(lo, pt.X), max(hi, pt.X)
		}
	}
	if math.IsInf(lo, 0) {
		return
	}
	pad := (hi - lo) * 0.08
	if pad == 0 {
		pad = math.Max(hi*0.2, 1)
	}
	a.Min, a.Max = math.Max(0, lo-pad), hi+pad
}

func drawThroughput(ss []series, pal palette) ([]byte, error) {
	if len(ss) == 0 {
		return nil, nil
	}
	p := newPlot("Achieved against offered throughput", "offered load (req/s)", "achieved (successful req/s)")
	padX(&p.X, ss)
	ideal, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 0}, {X: p.X.Max, Y: p.X.Max}})
	if err != nil {
		return nil, err
	}
	ideal.LineStyle = lineStyle(color.Gray{Y: 0xaa}, true)
	p.Add(ideal)
	p.Legend.Add("offered = achieved", ideal)
	for _, s := range ss {
		if err := addLine(p, s.Name, s.Points, pal.of(s.Datapath), false, false); err != nil {
			return nil, err
		}
	}
	headroom(p, 1.1)
	return render([][]*plot.Plot{{p}}, 10*vg.Inch, 4.5*vg.Inch)
}

const mib = 1 << 20

// barsAt returns a one-bar chart at x index i (for per-datapath colors).
func barsAt(i int, v float64, c color.Color, w vg.Length, offset vg.Length) (*plotter.BarChart, error) {
	b, err := plotter.NewBarChart(plotter.Values{v}, w)
	if err != nil {
		return nil, err
	}
	b.XMin = float64(i)
	b.Color = c
	b.LineStyle.Width = 0
	b.Offset = offset
	return b, nil
}

// stackRoles adds to p one bar series of n bars per process role, in
// roleOrder, each stacked on the one below and colored by role; value
// gives bar i's share of role, and a role with no positive share is left
// out.
func stackRoles(p *plot.Plot, n int, w vg.Length, value func(role string, i int) float64) error {
	var below *plotter.BarChart
	for _, role := range roleOrder {
		vals := make(plotter.Values, n)
		anyRole := false
		for i := range n {
			vals[i] = value(role, i)
			anyRole = anyRole || vals[i] > 0
		}
		if !anyRole {
			continue
		}
		b, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return err
		}
		b.Color = roleColors[role]
		b.LineStyle.Width = 0
		if below != nil {
			b.StackOn(below)
		}
		below = b
		p.Add(b)
		p.Legend.Add(role, b)
	}
	return nil
}

func drawMemory(rows []memoryRow, pal palette) ([]byte, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	w := vg.Points(16)
	var names []string
	for _, r := range rows {
		names = append(names, r.Datapath)
	}
	// Per proxy: RSS and PSS side by side.
	proxy := newPlot("Per proxy", "", "MiB")
	var proxied []memoryRow
	for _, r := range rows {
		if r.Proxies > 0 {
			proxied = append(proxied, r)
		}
	}
	if len(proxied) > 0 {
		var pn []string
		for i, r := range proxied {
			pn = append(pn, r.Datapath)
			rss, err := barsAt(i, r.ProxyRSS/mib, lighter(pal.of(r.Datapath)), w, -w/2)
			if err != nil {
				return nil, err
			}
			pss, err := barsAt(i, r.ProxyPSS/mib, pal.of(r.Datapath), w, w/2)
			if err != nil {
				return nil, err
			}
			proxy.Add(rss, pss)
			if i == 0 {
				proxy.Legend.Add("RSS (light)", rss)
				proxy.Legend.Add("PSS", pss)
			}
		}
		proxy.NominalX(pn...)
	} else {
		proxy.Title.Text = "Per proxy: no proxies"
		proxy.NominalX(names...)
	}
	headroom(proxy, 1.3)
	// Per pod PSS (apps and sidecars in pods).
	pod := newPlot("Per pod (PSS, all processes in the pod)", "", "MiB")
	for i, r := range rows {
		b, err := barsAt(i, r.PodPSS/mib, pal.of(r.Datapath), w*1.5, 0)
		if err != nil {
			return nil, err
		}
		pod.Add(b)
	}
	pod.NominalX(names...)
	headroom(pod, 1.15)
	// Testbed total by role, stacked.
	total := newPlot("Testbed total by role (PSS)", "", "MiB")
	if err := stackRoles(total, len(rows), w*1.5, func(role string, i int) float64 { return rows[i].RolePSS[role] / mib }); err != nil {
		return nil, err
	}
	total.NominalX(names...)
	headroom(total, 1.4)
	return render([][]*plot.Plot{{proxy, pod, total}}, 12*vg.Inch, 4.2*vg.Inch)
}

func drawExtrapolation(ex extrapolation, pal palette) ([]byte, error) {
	if len(ex.Rows) == 0 || len(ex.Scales) == 0 {
		return nil, nil
	}
	title := "Datapath memory extrapolated"
	if len(ex.Scales) == 1 {
		title = fmt.Sprintf("Datapath memory at %d nodes × %d pods per node", ex.Scales[0].Nodes, ex.Scales[0].PodsPerNode)
	}
	p := newPlot(title, "", "GiB")
	var names []string
	for _, r := range ex.Rows {
		model := r.Model
		if model == modelNone {
			model = "no proxy"
		}
		names = append(names, r.Datapath+" ("+model+")")
	}
	n := len(ex.Scales)
	w := vg.Points(36 / float64(n))
	ymax := 0.0
	for si, sc := range ex.Scales {
		off := w * vg.Length(float64(si)-float64(n-1)/2)
		var lx plotter.XYs
		var labels []string
		for i, r := range ex.Rows {
			v := r.Scales[si].Bytes / (1 << 30)
			ymax = max(ymax, v)
			c := pal.of(r.Datapath)
			if si%2 == 1 {
				c = lighter(c)
			}
			b, err := barsAt(i, v, c, w, off)
			if err != nil {
				return nil, err
			}
			p.Add(b)
			if i == 0 && n > 1 {
				p.Legend.Add(fmt.Sprintf("%d × %d", sc.Nodes, sc.PodsPerNode), b)
			}
			label := fmtBytes(r.Scales[si].Bytes)
			if !r.Measured {
				label = "not measured"
			}
			lx = append(lx, plotter.XY{X: float64(i), Y: v})
			labels = append(labels, label)
		}
		if n == 1 {
			l, err := plotter.NewLabels(plotter.XYLabels{XYs: lx, Labels: labels})
			if err != nil {
				return nil, err
			}
			for i := range l.TextStyle {
				l.TextStyle[i].XAlign = draw.XCenter
				l.TextStyle[i].YAlign = draw.YBottom
			}
			p.Add(l)
		}
	}
	p.NominalX(names...)
	p.Y.Min = 0
	p.Y.Max = ymax * 1.15
	if p.Y.Max <= 0 {
		p.Y.Max = 1
	}
	return render([][]*plot.Plot{{p}}, 10*vg.Inch, 4.2*vg.Inch)
}

func drawCost(rows []costRow, pal palette) ([]byte, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	var names []string
	for _, r := range rows {
		names = append(names, r.Datapath)
	}
	w := vg.Points(22)
	cpu := newPlot("CPU per request", "", "µs")
	cpuOf := map[string]func(costRow) float64{
		"client":   func(r costRow) float64 { return r.ClientCPU },
		"server":   func(r costRow) float64 { return r.ServerCPU },
		"datapath": func(r costRow) float64 { return r.DatapathCPU },
		"other":    func(r costRow) float64 { return r.OtherCPU },
	}
	if err := stackRoles(cpu, len(rows), w, func(role string, i int) float64 { return cpuOf[role](rows[i]) }); err != nil {
		return nil, err
	}
	cpu.NominalX(names...)
	headroom(cpu, 1.45)
	single := func(title, unit string, get func(costRow) float64) (*plot.Plot, error) {
		p := newPlot(title, "", unit)
		for i, r := range rows {
			b, err := barsAt(i, get(r), pal.of(r.Datapath), w, 0)
			if err != nil {
				return nil, err
			}
			p.Add(b)
		}
		p.NominalX(names...)
		headroom(p, 1.15)
		return p, nil
	}
	segs, err := single("TCP segments per request", "segments", func(r costRow) float64 { return r.Segments })
	if err != nil {
		return nil, err
	}
	ctx, err := single("Context switches per request", "switches", func(r costRow) float64 { return r.CtxSwitches })
	if err != nil {
		return nil, err
	}
	return render([][]*plot.Plot{{cpu, segs, ctx}}, 12*vg.Inch, 4.2*vg.Inch)
}

// rateColors shades the lines of a timeline, one per rate.
var rateColors = []color.RGBA{
	{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
	{R: 0x8c, G: 0x56, B: 0x4b, A: 0xff},
}

// shadeFaults adds one shaded band per fault over the y range lo..hi.
func shadeFaults(p *plot.Plot, faults []faultSpan, lo, hi float64) error {
	for i, f := range faults {
		poly, err := plotter.NewPolygon(plotter.XYs{
			{X: f.StartS, Y: lo}, {X: f.EndS, Y: lo}, {X: f.EndS, Y: hi}, {X: f.StartS, Y: hi},
		})
		if err != nil {
			return err
		}
		poly.Color = faultColor
		poly.LineStyle.Width = 0
		p.Add(poly)
		if i == 0 {
			p.Legend.Add("fault active", poly)
		}
	}
	return nil
}

func drawTimeline(tl timeline) ([]byte, error) {
	if len(tl.SuccessRatio) == 0 {
		return nil, nil
	}
	sr := newPlot(fmt.Sprintf("%s: success ratio over time (median, min–max over repetitions)", tl.Datapath), "seconds into the measured window", "success (%)")
	sr.Legend.Top = false // the lines run along the top
	lowest := 100.0
	for _, s := range tl.SuccessRatio {
		for _, pt := range s.Points {
			lowest = min(lowest, pt.Y*100)
			if pt.YMin > 0 {
				lowest = min(lowest, pt.YMin*100)
			}
		}
	}
	sr.Y.Min = math.Max(0, math.Min(lowest-1, 95))
	sr.Y.Max = 100.5
	if err := shadeFaults(sr, tl.Faults, sr.Y.Min, sr.Y.Max); err != nil {
		return nil, err
	}
	for i, s := range tl.SuccessRatio {
		pct := make([]point, len(s.Points))
		for j, pt := range s.Points {
			pct[j] = point{X: pt.X, Y: pt.Y * 100, YMin: pt.YMin * 100, YMax: pt.YMax * 100}
		}
		if err := addLine(sr, s.Name, pct, rateColors[i%len(rateColors)], false, false); err != nil {
			return nil, err
		}
	}
	tail := newPlot(fmt.Sprintf("%s: p99 latency over time", tl.Datapath), "seconds into the measured window", "p99 (µs)")
	var ys []float64
	for _, s := range tl.P99 {
		for _, pt := range s.Points {
			ys = append(ys, pt.Y, pt.YMin, pt.YMax)
		}
	}
	if logRange(&tail.Y, ys) {
		tail.Y.Max *= 1.4 // room for the legend
		if err := shadeFaults(tail, tl.Faults, tail.Y.Min, tail.Y.Max); err != nil {
			return nil, err
		}
		for i, s := range tl.P99 {
			var pos []point
			for _, pt := range s.Points {
				if pt.Y > 0 {
					pos = append(pos, pt)
				}
			}
			if len(pos) == 0 {
				continue
			}
			if err := addLine(tail, s.Name, pos, rateColors[i%len(rateColors)], false, true); err != nil {
				return nil, err
			}
		}
	} else {
		tail.Title.Text += ": no data"
	}
	return render([][]*plot.Plot{{sr}, {tail}}, 10*vg.Inch, 7*vg.Inch)
}
