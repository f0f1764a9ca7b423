package reports

import (
	"bytes"
	"image/color"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/meshbench/meshbench/harness/results"
)

// unknownRun adds two datapaths the report has never heard of to the
// fixture: "ebpf-l7", derived from the sidecar steps with one proxy per
// node (processes outside any pod), and "mystery", derived from the none
// steps with no processes recorded at all.
func unknownRun(t *testing.T) *results.Run {
	run := loadFixture(t)
	var extra []results.Step
	for _, s := range run.Steps {
		switch s.Datapath {
		case "sidecar":
			s.Datapath = "ebpf-l7"
			s.LatencyUS.P50 *= 0.8
			s.LatencyUS.P99 *= 0.8
			procs := withoutProxies(s.Processes)
			for _, node := range []string{"node-0", "node-1"} {
				procs = append(procs, results.Process{Node: node, Name: "ebpf-l7-agent", Role: results.RoleDatapath,
					PID: 9000 + len(procs), RSSBytes: 60 << 20, PSSBytes: 50 << 20})
			}
			s.Processes = procs
		case "none":
			s.Datapath = "mystery"
			s.Processes = nil
		default:
			continue
		}
		extra = append(extra, s)
	}
	run.Steps = append(run.Steps, extra...)
	run.Summaries = results.Summarize(run.Steps)
	return run
}

// TestUnknownDatapath checks that datapaths named only by the results get
// a color, every figure and table, and a placement inferred from their
// processes (or "unknown" without any), so nothing disappears.
func TestUnknownDatapath(t *testing.T) {
	run := unknownRun(t)
	m := newModel(run)
	if want := []string{"none", "sidecar", "mystery", "ebpf-l7"}; !slices.Equal(m.datapaths, want) {
		t.Fatalf("datapaths %v, want %v", m.datapaths, want)
	}

	t.Run("colors", func(t *testing.T) {
		pal := newPalette(m.datapaths)
		for dp, want := range map[string]color.Color{
			"none":    datapathColors["none"],
			"sidecar": datapathColors["sidecar"],
			"mystery": extraColors[0], // unknown names in run order
			"ebpf-l7": extraColors[1],
		} {
			if got := pal.of(dp); got != want {
				t.Errorf("color of %s = %v, want %v", dp, got, want)
			}
		}
		if again := newPalette(m.datapaths); again.of("ebpf-l7") != pal.of("ebpf-l7") {
			t.Error("the fallback color is not deterministic")
		}
	})

	t.Run("plot data", func(t *testing.T) {
		d := buildPlotData(m, DefaultScales)
		has := func(what string, dps []string, dp string) {
			t.Helper()
			if !slices.Contains(dps, dp) {
				t.Errorf("%s lacks %s: %v", what, dp, dps)
			}
		}
		for _, p := range d.Spectrum {
			has("spectrum at "+fmtRate(p.RateRPS), seriesDatapaths(p.Series), "ebpf-l7")
		}
		has("latency vs load", seriesDatapaths(d.LatencyVsLoad), "ebpf-l7")
		has("throughput", seriesDatapaths(d.Throughput), "ebpf-l7")
		var mem, cost, tls []string
		for _, r := range d.Memory {
			mem = append(mem, r.Datapath)
		}
		for _, r := range d.Cost {
			cost = append(cost, r.Datapath)
		}
		for _, tl := range d.Timelines {
			tls = append(tls, tl.Datapath)
		}
		has("memory", mem, "ebpf-l7")
		has("cost", cost, "ebpf-l7")
		has("cost", cost, "mystery")
		has("timelines", tls, "ebpf-l7")
		models := map[string]extrapolationRow{}
		for _, r := range d.Extrapolation.Rows {
			models[r.Datapath] = r
		}
		if r := models["ebpf-l7"]; r.Model != modelPerNode || !r.Measured || r.Scales[0].Proxies != 500 {
			t.Errorf("ebpf-l7 extrapolation %+v, want per node, measured, 500 proxies", r)
		}
		if r := models["mystery"]; r.Model != modelUnknown || r.Measured {
			t.Errorf("mystery extrapolation %+v, want unknown and not measured", r)
		}
	})

	t.Run("html", func(t *testing.T) {
		var logs bytes.Buffer
		out := t.TempDir()
		path, err := GenerateRun(run, out, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		if logs.Len() > 0 {
			t.Errorf("figures not drawn:\n%s", logs.String())
		}
		checkPNG(t, filepath.Join(out, timelineFile("ebpf-l7")), 20)
		page, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			`<figure id="fig-timeline-ebpf-l7">`,
			"ebpf-l7 adds", // its verdict, against none
			"mystery adds",
		} {
			if !strings.Contains(string(page), want) {
				t.Errorf("report lacks %q", want)
			}
		}
	})
}

// seriesDatapaths lists the datapaths of ss.
func seriesDatapaths(ss []series) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Datapath)
	}
	return out
}
