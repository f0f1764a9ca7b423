package reports

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/color"
	_ "image/png"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/internal/golden"
)

var keepOut = flag.String("out", "", "write the reports into DIR/<case> instead of a temporary directory, to look at them")

// Edge-case runs, built from the fixture.

// keepSteps keeps the steps of run for which keep is true, and their
// summaries.
func keepSteps(run *results.Run, keep func(results.Step) bool) *results.Run {
	run.Steps = slices.DeleteFunc(run.Steps, func(s results.Step) bool { return !keep(s) })
	run.Summaries = results.Summarize(run.Steps)
	return run
}

// withoutProxies returns a copy of procs without the datapath-role
// processes.
func withoutProxies(procs []results.Process) []results.Process {
	var out []results.Process
	for _, p := range procs {
		if p.Role != results.RoleDatapath {
			out = append(out, p)
		}
	}
	return out
}

func singleRun(t *testing.T) *results.Run {
	return keepSteps(loadFixture(t), func(s results.Step) bool {
		return s.Datapath == "sidecar" && s.OfferedRPS == 500 && s.Repetition == 1
	})
}

func failedEarlyRun(t *testing.T) *results.Run {
	run := loadFixture(t)
	run.Status = results.StatusFailed
	run.Error = "install sidecar in pod pod-0-0: <iptables> exited 4"
	run.Steps, run.Summaries, run.Calibration = nil, nil, nil
	return run
}

func noneOnlyRun(t *testing.T) *results.Run {
	return keepSteps(loadFixture(t), func(s results.Step) bool { return s.Datapath == "none" })
}

func bareRun(t *testing.T) *results.Run {
	run := loadFixture(t)
	run.Status = results.StatusInterrupted
	for i := range run.Steps {
		s := &run.Steps[i]
		s.Processes, s.Windows, s.Histogram = nil, nil, results.Histogram{}
		s.Cost = results.Cost{}
		s.Proof = results.Proof{}
	}
	run.Summaries = nil // as a partial file may have them
	run.Calibration = nil
	run.Scenario = results.ScenarioCopy{}
	run.Environment = results.Environment{}
	return run
}

// fiveRun adds sockmap, nodeproxy and afxdp to the fixture, derived from
// its sidecar steps (latency, cost and proxy placement changed), to
// exercise the per-node memory model and the headline.
func fiveRun(t *testing.T) *results.Run {
	run := loadFixture(t)
	var extra []results.Step
	for _, dp := range []struct {
		name       string
		lat, cost  float64
		perNode    bool
		proxyBytes int64
	}{
		{"sockmap", 0.95, 0.8, false, 24 << 20},
		{"nodeproxy", 0.9, 0.7, true, 40 << 20},
		{"afxdp", 0.7, 0.5, true, 90 << 20},
	} {
		for _, s := range run.Steps {
			if s.Datapath != "sidecar" {
				continue
			}
			s.Datapath = dp.name
			s.LatencyUS.P50 *= dp.lat
			s.LatencyUS.P90 *= dp.lat
			s.LatencyUS.P99 *= dp.lat
			s.LatencyUS.P999 *= dp.lat
			s.Cost.CPUMicrosPerRequest *= dp.cost
			s.Cost.DatapathCPUMicrosPerReq *= dp.cost
			s.Cost.SegmentsPerRequest *= dp.cost
			s.Cost.ContextSwitchesPerReq *= dp.cost
			s.Histogram = results.Histogram{}
			if dp.name == "sockmap" {
				// No packet carries the app↔sidecar bytes: nothing to stamp.
				s.KernelStamped, s.KernelLatencyUS, s.KernelHistogram, s.ClientOverheadUS = 0, nil, nil, nil
			}
			procs := withoutProxies(s.Processes)
			if dp.perNode {
				for n := range 2 {
					procs = append(procs, results.Process{Node: fmt.Sprintf("node-%d", n), Name: dp.name + "-forwarder",
						Role: results.RoleDatapath, PID: 9000 + n, RSSBytes: dp.proxyBytes, PSSBytes: dp.proxyBytes * 9 / 10, USSBytes: dp.proxyBytes * 8 / 10})
				}
			} else {
				for _, p := range s.Processes {
					if p.Role == results.RoleDatapath {
						p.RSSBytes, p.PSSBytes, p.USSBytes = dp.proxyBytes, dp.proxyBytes*7/10, dp.proxyBytes*4/10
						procs = append(procs, p)
					}
				}
			}
			s.Processes = procs
			s.Windows = nil
			switch dp.name {
			case "sockmap":
				s.Footprint = &results.Footprint{BPFBytes: 11 << 20, BPFCopies: 1, Basis: "per pod: its sidecar; per node: the steer and sockmap programs and maps"}
			case "nodeproxy":
				s.Footprint = &results.Footprint{BPFBytes: 21 << 20, BPFCopies: 2, Basis: "per node: its proxy and its steering programs and maps"}
			case "afxdp":
				pods := map[string]bool{}
				for _, p := range procs {
					if p.Pod != "" {
						pods[p.Pod] = true
					}
				}
				s.Footprint = &results.Footprint{BPFBytes: 54 << 10, BPFCopies: 2, PodBytes: 12 << 20, PodUnits: len(pods),
					Basis: "per node: the forwarder with its uplink's socket, and its XDP program and maps; per pod: the AF_XDP socket on its veth"}
			}
			extra = append(extra, s)
		}
	}
	run.Steps = append(run.Steps, extra...)
	run.Summaries = results.Summarize(run.Steps)
	return run
}

var cases = []struct {
	name string
	run  func(*testing.T) *results.Run
}{
	{"fixture", loadFixture},
	{"single", singleRun},
	{"failed-early", failedEarlyRun},
	{"none-only", noneOnlyRun},
	{"bare", bareRun},
	{"five", fiveRun},
	{"unknown", unknownRun},
	{"engines", enginesRun},
}

// TestPlotData checks the numbers every figure draws against golden JSON.
func TestPlotData(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := newModel(tc.run(t))
			d := buildPlotData(m, DefaultScales)
			b, err := json.MarshalIndent(d, "", " ")
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", "plotdata-"+tc.name+".golden.json"), append(b, '\n'))
		})
	}
}

// htmlStructure lists the report's headings, banners, verdict sentences,
// tables (with row counts) and figures (image or no-data), one per line:
// the structure of the page without the image bytes.
func htmlStructure(t *testing.T, doc []byte) string {
	t.Helper()
	root, err := html.Parse(bytes.NewReader(doc))
	if err != nil {
		t.Fatalf("parse report: %v", err)
	}
	var b strings.Builder
	attr := func(n *html.Node, key string) string {
		for _, a := range n.Attr {
			if a.Key == key {
				return a.Val
			}
		}
		return ""
	}
	var text func(n *html.Node) string
	text = func(n *html.Node) string {
		if n.Type == html.TextNode {
			return n.Data
		}
		var s strings.Builder
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			s.WriteString(text(c))
		}
		return s.String()
	}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			class := attr(n, "class")
			switch {
			case n.Data == "h1" || n.Data == "h2" || n.Data == "h3" || n.Data == "h4":
				fmt.Fprintf(&b, "%s %s\n", n.Data, strings.TrimSpace(text(n)))
			case n.Data == "table":
				rows := 0
				var count func(*html.Node)
				count = func(x *html.Node) {
					if x.Type == html.ElementNode && x.Data == "tr" {
						rows++
					}
					for c := x.FirstChild; c != nil; c = c.NextSibling {
						count(c)
					}
				}
				count(n)
				fmt.Fprintf(&b, "table#%s rows=%d\n", attr(n, "id"), rows)
			case n.Data == "img":
				src := attr(n, "src")
				kind := "external"
				if strings.HasPrefix(src, "data:image/png;base64,") {
					kind = "embedded-png"
				}
				fmt.Fprintf(&b, "img %s alt=%q\n", kind, attr(n, "alt"))
			case n.Data == "figure":
				fmt.Fprintf(&b, "figure#%s\n", attr(n, "id"))
			case class == "banner" || class == "warning" || class == "nodata" ||
				class == "verdict" || class == "headline-line":
				fmt.Fprintf(&b, ".%s %s\n", class, strings.TrimSpace(text(n)))
			case n.Data == "tr" && attr(n.Parent, "id") == "" && n.Parent != nil && n.Parent.Parent != nil && rowTables[attr(n.Parent.Parent, "id")] != "" && n.Parent.Data == "tbody":
				// Cells marked as warnings end in "!", rows in "(warn)".
				var cells []string
				for c := n.FirstChild; c != nil; c = c.NextSibling {
					if c.Type == html.ElementNode {
						cell := strings.TrimSpace(text(c))
						if attr(c, "class") == "warn" {
							cell += "!"
						}
						cells = append(cells, cell)
					}
				}
				name := rowTables[attr(n.Parent.Parent, "id")]
				if class == "warn" {
					name += "(warn)"
				}
				fmt.Fprintf(&b, "%s %s\n", name, strings.Join(cells, " | "))
			case class == "engine-note":
				fmt.Fprintf(&b, ".engine-note %s\n", strings.TrimSpace(text(n.FirstChild)))
				for c := n.FirstChild; c != nil; c = c.NextSibling {
					if c.Type == html.TextNode && strings.TrimSpace(c.Data) != ":" {
						fmt.Fprintf(&b, "  %s\n", strings.TrimSpace(strings.TrimPrefix(c.Data, ":")))
					}
					if c.Type == html.ElementNode && c.Data == "ul" {
						for li := c.FirstChild; li != nil; li = li.NextSibling {
							fmt.Fprintf(&b, "  - %s\n", strings.TrimSpace(text(li)))
						}
					}
				}
			case class == "figs":
				fmt.Fprintf(&b, ".figs %s\n", strings.TrimSpace(text(n)))
			case n.Data == "ul" && class == "checks":
				fmt.Fprintf(&b, "ul.checks %s\n", strings.TrimSpace(text(n.FirstChild)))
			case n.Data == "pre":
				fmt.Fprintf(&b, "pre#%s lines=%d\n", attr(n, "id"), strings.Count(text(n), "\n"))
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(root)
	return b.String()
}

// rowTables are the tables whose rows htmlStructure lists, with the word
// each row line starts with.
var rowTables = map[string]string{"overhead-table": "overhead", "engines-table": "engines"}

// TestHTMLStructure checks the report's structure against golden text.
func TestHTMLStructure(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteHTML(&buf, tc.run(t), Options{}); err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", "html-"+tc.name+".golden.txt"), []byte(htmlStructure(t, buf.Bytes())))
			if strings.Contains(buf.String(), "<script>") {
				t.Error("user text reached the page unescaped (<script>)")
			}
			if strings.Contains(buf.String(), "ZgotmplZ") {
				t.Error("html/template rejected a value (ZgotmplZ)")
			}
		})
	}
}

// TestGenerate runs the CLI entry point on each case and checks the files.
func TestGenerate(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			run := tc.run(t)
			dir := t.TempDir()
			in := filepath.Join(dir, "results.json")
			if err := results.WriteFile(in, run); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "report")
			if *keepOut != "" {
				out = filepath.Join(*keepOut, tc.name)
			}
			path, err := Generate(in, out, Options{})
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			if path != filepath.Join(out, HTMLFile) {
				t.Errorf("Generate returned %q", path)
			}
			for _, f := range []string{HTMLFile, CSVFile, BenchfmtFile, SMPFile} {
				if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
					t.Errorf("%s: missing or empty (%v)", f, err)
				}
			}
			pngs, _ := filepath.Glob(filepath.Join(out, "*.png"))
			var names []string
			for _, p := range pngs {
				names = append(names, filepath.Base(p))
				checkPNG(t, p, 20)
			}
			want := map[string][]string{
				"fixture":      {"cost.png", "latency-spectrum.png", "latency-vs-load.png", "memory-extrapolation.png", "memory.png", "throughput.png", "timeline-none.png", "timeline-sidecar.png"},
				"single":       {"cost.png", "latency-spectrum.png", "latency-vs-load.png", "memory-extrapolation.png", "memory.png", "throughput.png", "timeline-sidecar.png"},
				"failed-early": nil,
				"none-only":    {"cost.png", "latency-spectrum.png", "latency-vs-load.png", "memory.png", "throughput.png", "timeline-none.png"},
				"bare":         {"latency-vs-load.png", "throughput.png"},
				"five":         {"cost.png", "latency-spectrum.png", "latency-vs-load.png", "memory-extrapolation.png", "memory.png", "throughput.png", "timeline-none.png", "timeline-sidecar.png"},
				"unknown":      {"cost.png", "latency-spectrum.png", "latency-vs-load.png", "memory-extrapolation.png", "memory.png", "throughput.png", "timeline-ebpf-l7.png", "timeline-mystery.png", "timeline-none.png", "timeline-sidecar.png"},
				"engines":      {"cost.png", "latency-spectrum.png", "latency-vs-load.png", "memory-extrapolation.png", "memory.png", "throughput.png", "timeline-none.png", "timeline-sidecar_builtin.png"},
			}[tc.name]
			if strings.Join(names, ",") != strings.Join(want, ",") {
				t.Errorf("figures = %v, want %v", names, want)
			}
		})
	}
}

// checkPNG decodes the PNG at path and fails unless it has at least
// minColors distinct colors and some non-white pixels.
func checkPNG(t *testing.T, path string, minColors int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, _, err := image.Decode(f)
	if err != nil {
		t.Fatalf("%s: decode: %v", path, err)
	}
	colors, nonWhite, total := pixelStats(img)
	if colors < minColors || nonWhite*100 < total {
		t.Errorf("%s looks blank: %d distinct colors, %d of %d pixels not white", filepath.Base(path), colors, nonWhite, total)
	}
}

// pixelStats counts the distinct colors and non-white pixels of img.
func pixelStats(img image.Image) (colors, nonWhite, total int) {
	seen := map[color.RGBA]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)
			seen[c] = true
			if c.R < 0xf0 || c.G < 0xf0 || c.B < 0xf0 {
				nonWhite++
			}
			total++
		}
	}
	return len(seen), nonWhite, total
}

// chromium is where Debian's chromium package puts the browser.
const chromium = "/usr/bin/chromium"

// TestHTMLRendersInChromium renders the fixture's report in headless
// Chromium and checks the screenshot is not blank.
func TestHTMLRendersInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode: starts a browser")
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("skipped: %s is absent (install the Debian package chromium, or run make test-deps)", chromium)
	}
	for _, tc := range []struct {
		name string
		run  func(*testing.T) *results.Run
	}{
		{"fixture", loadFixture},
		{"failed-early", failedEarlyRun},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "report")
			if *keepOut != "" {
				out = filepath.Join(*keepOut, tc.name)
			}
			path, err := GenerateRun(tc.run(t), out, Options{})
			if err != nil {
				t.Fatal(err)
			}
			abs, err := filepath.Abs(path)
			if err != nil {
				t.Fatal(err)
			}
			shot := filepath.Join(dir, "screenshot.png")
			if *keepOut != "" {
				shot = filepath.Join(*keepOut, tc.name+"-screenshot.png")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, chromium,
				"--headless", "--no-sandbox", "--disable-gpu",
				"--disable-background-networking", "--disable-component-update",
				"--disable-sync", "--no-first-run",
				"--user-data-dir="+filepath.Join(dir, "profile"),
				"--screenshot="+shot, "--window-size=1280,2000",
				"file://"+abs)
			cmd.Env = append(os.Environ(), "HOME="+dir)
			if outb, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("chromium: %v\n%s", err, outb)
			}
			f, err := os.Open(shot)
			if err != nil {
				t.Fatalf("no screenshot: %v", err)
			}
			defer f.Close()
			img, _, err := image.Decode(f)
			if err != nil {
				t.Fatalf("decode screenshot: %v", err)
			}
			if b := img.Bounds(); b.Dx() != 1280 || b.Dy() != 2000 {
				t.Errorf("screenshot is %v, want 1280×2000", b.Size())
			}
			colors, nonWhite, total := pixelStats(img)
			t.Logf("screenshot: %d distinct colors, %.1f%% non-white", colors, 100*float64(nonWhite)/float64(total))
			if colors < 200 {
				t.Errorf("screenshot has %d distinct colors; the page looks blank or unstyled", colors)
			}
			if nonWhite*100 < total*3 {
				t.Errorf("screenshot is %.1f%% non-white; the page looks blank", 100*float64(nonWhite)/float64(total))
			}
		})
	}
}

// TestOddData feeds degenerate runs through every output: none may panic
// or fail.
func TestOddData(t *testing.T) {
	mutate := map[string]func(r *results.Run){
		"zero latencies": func(r *results.Run) {
			for i := range r.Steps {
				r.Steps[i].LatencyUS = results.Latency{}
				r.Steps[i].Windows = []results.Window{{StartS: 0}, {StartS: 1, Requests: 5, Successes: 0}}
			}
			r.Summaries = results.Summarize(r.Steps)
		},
		"one request": func(r *results.Run) {
			r.Steps = r.Steps[:1]
			r.Steps[0].Histogram.Buckets = []results.Bucket{{UpperUS: 1, Count: 1}}
			r.Summaries = results.Summarize(r.Steps)
		},
		"rate zero and empty names": func(r *results.Run) {
			for i := range r.Steps {
				r.Steps[i].OfferedRPS = 0
				r.Steps[i].Datapath = ""
			}
			r.Summaries = results.Summarize(r.Steps)
		},
		"huge values": func(r *results.Run) {
			for i := range r.Steps {
				r.Steps[i].LatencyUS.P99 = 1e12
				r.Steps[i].Cost.CPUMicrosPerRequest = 1e15
				for j := range r.Steps[i].Processes {
					r.Steps[i].Processes[j].PSSBytes = 1 << 60
				}
			}
			r.Summaries = results.Summarize(r.Steps)
		},
		"summaries without steps": func(r *results.Run) {
			r.Steps = nil
		},
		"unknown datapath, per-node processes": func(r *results.Run) {
			for i := range r.Steps {
				r.Steps[i].Datapath = "my/odd <dp>"
				for j := range r.Steps[i].Processes {
					r.Steps[i].Processes[j].Pod = ""
				}
			}
			r.Summaries = results.Summarize(r.Steps)
		},
		"resolved scenario of another shape": func(r *results.Run) {
			r.Scenario.Resolved = json.RawMessage(`{"name": 5, "load": "x"}`)
		},
	}
	for _, name := range sortedKeys(mutate) {
		t.Run(name, func(t *testing.T) {
			run := loadFixture(t)
			mutate[name](run)
			var logs bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&logs, nil))
			if _, err := GenerateRun(run, t.TempDir(), Options{Logger: logger, Scales: []Scale{{10, 3}, {0, 5}, {500, 30}}}); err != nil {
				t.Fatalf("GenerateRun: %v", err)
			}
			if logs.Len() > 0 {
				t.Errorf("figures not drawn:\n%s", logs.String())
			}
			if _, err := Compare(run, run, CompareOptions{}); err != nil {
				t.Fatalf("Compare: %v", err)
			}
		})
	}
}
