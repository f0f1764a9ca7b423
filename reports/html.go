package reports

import (
	_ "embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
)

//go:embed report.html.tmpl
var reportTemplate string

var pageTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"check": func(ok bool) string {
		if ok {
			return "✓"
		}
		return "✗"
	},
}).Parse(reportTemplate))

// figure is one image of the report, or the reason it is missing.
type figure struct {
	ID      string
	File    string
	Title   string
	Caption string
	Src     template.URL
	NoData  string
}

// summaryRow is one datapath × rate of the summary table.
type summaryRow struct {
	Datapath, Rate                     string
	Achieved, Success                  string
	P50, P99, P50Ratio, P99Ratio       string
	CPU, Segments, CtxSwitches, Memory string
	Proof                              bool
	// ProofFigures are the proof's figures per request ("3.99 sk_msg
	// redirects/req, 0 sk_msg misses").
	ProofFigures string
	Warn         bool
}

// overheadRow is one datapath × rate of the client-overhead table: the
// latency the client measured, the kernel-side latency of the same
// requests and the difference, and whether the client kept up.
type overheadRow struct {
	Datapath, Rate                         string
	AppP50, KernelP50, OverP50             string
	AppP99, KernelP99, OverP99             string
	Stamped, SentRPS, SendLag, Connections string
	// Parts is the client overhead's p50 by part ("send lag / to socket
	// / to wire / from wire / after read", µs).
	Parts     string
	NoStamps  string // why there is no kernel-side figure
	ConnsWarn bool
}

// engineSeat is one seat of the engines table: its engine-labelled
// datapaths, rate by rate.
type engineSeat struct {
	Seat string
	Rows []engineRow
}

// engineRow is one engine-labelled datapath × rate of the engines table.
type engineRow struct {
	Seat, Datapath, Rate, P50, P99, AddedP50, AddedP99 string
	// CPU and PSS are the proxies' per request and per proxy; ChildCPU
	// and ChildPSS their engine children's part.
	CPU, ChildCPU, PSS, ChildPSS string
	// Ratios are added p50, CPU per request and PSS per proxy divided by
	// the reference engine's in the same seat at the same rate.
	Ratios []engineRatio
	// Warn marks a row with a ratio that misses its goal.
	Warn bool
}

// engineRatio is one ratio of the engines table; Miss marks one that
// misses its goal.
type engineRatio struct {
	Text string
	Miss bool
}

// engineNotesRow is one datapath's engine notes, or Text ("none") without
// any.
type engineNotesRow struct {
	Datapath, Text string
	Notes          []string
}

// spreadRow shows the spread over repetitions of one datapath × rate.
type spreadRow struct {
	Datapath, Rate, Reps                   string
	Achieved, Success, P50, P90, P99, P999 string
	Max, CPU, Segments, CtxSwitches        string
}

// proofRow is one step's proof of path.
type proofRow struct {
	Datapath, Rate, Rep, Source, Counters, Detail string
	// Checks are the measured window's rules; Warmup says how the
	// warm-up's proof went ("✓", "✗" or "—" without one).
	Checks []checkRow
	Warmup string
	// Metrics are what the datapath measured about itself (push latency).
	Metrics      string
	Verified     bool
	Inconclusive bool
}

// checkRow is one rule of a proof.
type checkRow struct {
	OK                              bool
	Name, Figure, Want, Why, Detail string
}

// faultRow is one fault of one step.
type faultRow struct {
	Datapath, Rate, Rep, Name, Fault, Impl, Window, Evidence, Errors, Detect, Readiness, Recover, Error string
	// Inactive marks a fault whose own counters show it did nothing.
	Inactive bool
}

// errorRow is one step's errors.
type errorRow struct {
	Datapath, Rate, Rep, Errors string
}

// kv is one key/value row.
type kv struct{ Key, Value string }

// memoryTableRow is one datapath of the memory table.
type memoryTableRow struct {
	Datapath, Model, Proxies, ProxyRSS, ProxyPSS, Pods, PodPSS string
	DatapathPSS, ServerPSS, ClientPSS                          string
}

// extrapolationTableRow is one datapath of the extrapolation table.
type extrapolationTableRow struct {
	Datapath, Model, PerProxy, PerPod, PerNode, Counts string
	Cells                                              []string
}

// page is everything the HTML template shows.
type page struct {
	Title        string
	Status       string
	Banner       string
	Meta         []kv
	Headline     []string
	Verdicts     []string
	ProofWarning string
	Summary      []summaryRow
	Overhead     []overheadRow
	Engines      []engineSeat
	EngineRef    string
	EngineGoal   string
	EngineNotes  []engineNotesRow
	Figures      []figure
	Memory       []memoryTableRow
	ExHeaders    []string
	Extrapolate  []extrapolationTableRow
	Timelines    []figure
	Spread       []spreadRow
	Proof        []proofRow
	Errors       []errorRow
	Faults       []faultRow
	Calibration  []kv
	Environment  []kv
	ScenarioPath string
	Scenario     string
	Resolved     string
}

// rendered holds a report's computed data and drawn figures.
type rendered struct {
	data  plotData
	pngs  map[string][]byte // by file name
	fails map[string]string // drawing errors by file name
}

func renderFigures(m *model, data plotData) rendered {
	pal := newPalette(m.datapaths)
	out := rendered{data: data, pngs: map[string][]byte{}, fails: map[string]string{}}
	draw := func(file string, f func() ([]byte, error)) {
		b, err := f()
		if err != nil {
			out.fails[file] = err.Error()
			return
		}
		if len(b) > 0 {
			out.pngs[file] = b
		}
	}
	draw(fileSpectrum, func() ([]byte, error) { return drawSpectrum(data.Spectrum, pal) })
	draw(fileLatencyVsLoad, func() ([]byte, error) { return drawLatencyVsLoad(data.LatencyVsLoad, pal) })
	draw(fileThroughput, func() ([]byte, error) { return drawThroughput(data.Throughput, pal) })
	draw(fileCost, func() ([]byte, error) { return drawCost(data.Cost, pal) })
	draw(fileMemory, func() ([]byte, error) { return drawMemory(data.Memory, pal) })
	draw(fileExtrapolation, func() ([]byte, error) { return drawExtrapolation(data.Extrapolation, pal) })
	for _, tl := range data.Timelines {
		draw(timelineFile(tl.Datapath), func() ([]byte, error) { return drawTimeline(tl) })
	}
	return out
}

func (r rendered) figure(id, file, title, caption, noData string) figure {
	f := figure{ID: id, File: file, Title: title, Caption: caption}
	switch {
	case len(r.pngs[file]) > 0:
		f.Src = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(r.pngs[file]))
	case r.fails[file] != "":
		f.NoData = "No figure: " + r.fails[file]
	default:
		f.NoData = noData
	}
	return f
}

// buildPage assembles the page from one builder per section, in the order
// the template shows them.
func buildPage(m *model, r rendered) page {
	run := m.run
	data := r.data
	p := page{
		Status: run.Status,
		Title:  pageTitle(run),
		Banner: statusBanner(run),
		Meta:   runMeta(run),
	}
	p.Headline, p.Verdicts = verdictLines(m, data.Extrapolation)
	p.ProofWarning = proofWarning(run.Steps)
	p.Summary = summaryRows(m, data)
	p.Overhead = overheadRows(m)
	p.Engines = engineSeats(m)
	p.EngineRef, p.EngineGoal = referenceEngine, engineGoalText()
	p.EngineNotes = engineNotesRows(m, p.Engines)
	p.Figures = evidenceFigures(r)
	p.Memory = memoryRows(m, data.Memory)
	p.ExHeaders, p.Extrapolate = extrapolationTable(data.Extrapolation)
	p.Timelines = timelineFigures(r)
	p.Spread = spreadRows(m)
	p.Proof = proofRows(run.Steps)
	p.Errors = errorRows(run.Steps)
	p.Faults = faultRows(run.Steps)
	p.Calibration = calibrationTable(run.Calibration)
	p.Environment = environmentTable(run.Environment)
	p.ScenarioPath, p.Scenario, p.Resolved = scenarioText(run)
	return p
}

func writeHTML(w io.Writer, p page) error {
	if err := pageTemplate.Execute(w, p); err != nil {
		return fmt.Errorf("render report: %w", err)
	}
	return nil
}

// orDefault returns s, or def when s is empty.
func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
