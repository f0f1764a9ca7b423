package reports

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"

	"github.com/meshbench/meshbench/internal/atomicfile"

	"github.com/meshbench/meshbench/harness/results"
)

// Output file names Generate writes (besides the figures).
const (
	// HTMLFile is the self-contained report.
	HTMLFile = "report.html"
	// CSVFile holds one row per step.
	CSVFile = "results.csv"
	// BenchfmtFile holds the Go benchmark format export, for benchstat.
	BenchfmtFile = "results.benchfmt.txt"
	// SMPFile holds the Service Mesh Performance (SMP) export.
	SMPFile = "smp.json"
)

// Scale is a cluster size to extrapolate proxy memory to.
type Scale struct {
	Nodes       int `json:"nodes"`
	PodsPerNode int `json:"pods_per_node"`
}

// DefaultScales is the cluster size memory is extrapolated to when Options
// names none: 500 nodes × 30 pods, the size sidecar-cost articles use.
var DefaultScales = []Scale{{Nodes: 500, PodsPerNode: 30}}

// Options configures Generate and WriteHTML. The zero value is ready to use.
type Options struct {
	// Logger receives a warning per figure that could not be drawn; nil
	// discards.
	Logger *slog.Logger
	// Scales are the cluster sizes for the memory extrapolation; default
	// DefaultScales. Sizes that are not positive are ignored.
	Scales []Scale
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

func (o Options) scales() []Scale {
	var out []Scale
	for _, s := range o.Scales {
		if s.Nodes > 0 && s.PodsPerNode > 0 {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return DefaultScales
	}
	return out
}

// report is a run with its figures drawn, ready to write.
type report struct {
	model    *model
	rendered rendered
}

func newReport(run *results.Run, opts Options) *report {
	m := newModel(run)
	r := renderFigures(m, buildPlotData(m, opts.scales()))
	log := opts.logger()
	for _, file := range sortedKeys(r.fails) {
		log.Warn("figure not drawn", "file", file, "err", r.fails[file])
	}
	return &report{model: m, rendered: r}
}

// WriteHTML writes run's self-contained HTML report (figures embedded as
// data URIs) to w.
func WriteHTML(w io.Writer, run *results.Run, opts Options) error {
	if run == nil {
		return errors.New("write report: nil run")
	}
	r := newReport(run, opts)
	return writeHTML(w, buildPage(r.model, r.rendered))
}

// Generate reads the results file at resultsPath and writes into outDir
// (created if needed): report.html, one PNG per figure (latency-spectrum,
// latency-vs-load, throughput, cost, memory, memory-extrapolation and
// timeline-<datapath>, each only when the run has data for it),
// results.csv, results.benchfmt.txt and smp.json. It returns the path of
// report.html. Runs that failed early, with one datapath or one rate, or
// without optional data still get a report that says what is missing.
func Generate(resultsPath, outDir string, opts Options) (htmlPath string, err error) {
	run, err := results.ReadFile(resultsPath)
	if err != nil {
		return "", fmt.Errorf("read results: %w", err)
	}
	return GenerateRun(run, outDir, opts)
}

// GenerateRun is Generate for a run already in memory.
func GenerateRun(run *results.Run, outDir string, opts Options) (htmlPath string, err error) {
	if run == nil {
		return "", errors.New("generate report: nil run")
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", fmt.Errorf("generate report: %w", err)
	}
	r := newReport(run, opts)
	var errs []error
	files := sortedKeys(r.rendered.pngs)
	sort.Strings(files)
	for _, name := range files {
		if err := writeFile(filepath.Join(outDir, name), r.rendered.pngs[name]); err != nil {
			errs = append(errs, err)
		}
	}
	exports := []struct {
		name  string
		write func(io.Writer, *results.Run) error
	}{
		{CSVFile, WriteCSV},
		{BenchfmtFile, WriteBenchfmt},
		{SMPFile, WriteSMP},
	}
	for _, e := range exports {
		var buf bytes.Buffer
		if err := e.write(&buf, run); err != nil {
			errs = append(errs, fmt.Errorf("export %s: %w", e.name, err))
			continue
		}
		if err := writeFile(filepath.Join(outDir, e.name), buf.Bytes()); err != nil {
			errs = append(errs, err)
		}
	}
	var html bytes.Buffer
	if err := writeHTML(&html, buildPage(r.model, r.rendered)); err != nil {
		return "", errors.Join(append(errs, err)...)
	}
	htmlPath = filepath.Join(outDir, HTMLFile)
	if err := writeFile(htmlPath, html.Bytes()); err != nil {
		return "", errors.Join(append(errs, err)...)
	}
	return htmlPath, errors.Join(errs...)
}

// writeFile writes data to path through a temporary file and a rename, so
// that a reader never sees a partial file.
func writeFile(path string, data []byte) error {
	return atomicfile.Write(path, 0o644, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}
