package reports

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"golang.org/x/perf/benchfmt"

	"github.com/meshbench/meshbench/harness/results"
)

// csvHeader names the columns of WriteCSV, one row per step.
var csvHeader = []string{
	"run_id", "datapath", "service", "offered_rps", "repetition",
	"achieved_rps", "sent_rps", "duration_s", "requests", "successes", "success_ratio",
	"mean_us", "p50_us", "p90_us", "p99_us", "p999_us", "max_us",
	"cpu_us_per_request", "client_cpu_us_per_request", "server_cpu_us_per_request", "datapath_cpu_us_per_request",
	"segments_per_request", "context_switches_per_request", "tcp_in_segs", "tcp_out_segs",
	"datapath_processes", "datapath_rss_bytes", "datapath_pss_bytes",
	"proof_verified", "interrupted", "error",
}

// WriteCSV writes one header row and then one row per step of run, in the
// order the steps ran. Memory columns sum the step's datapath-role
// processes.
func WriteCSV(w io.Writer, run *results.Run) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	f := func(v float64) string { return strconv.FormatFloat(finite(v), 'f', -1, 64) }
	i := func(v int64) string { return strconv.FormatInt(v, 10) }
	for _, s := range run.Steps {
		var procs int
		var rss, pss int64
		for _, p := range s.Processes {
			if p.Role == results.RoleDatapath {
				procs++
				rss += p.RSSBytes
				pss += p.PSSBytes
			}
		}
		row := []string{
			run.ID, s.Datapath, s.Service, f(s.OfferedRPS), strconv.Itoa(s.Repetition),
			f(s.AchievedRPS), f(s.SentRPS), f(time.Duration(s.Duration).Seconds()), i(s.Requests), i(s.Successes), f(s.SuccessRatio),
			f(s.LatencyUS.Mean), f(s.LatencyUS.P50), f(s.LatencyUS.P90), f(s.LatencyUS.P99), f(s.LatencyUS.P999), f(s.LatencyUS.Max),
			f(s.Cost.CPUMicrosPerRequest), f(s.Cost.ClientCPUMicrosPerReq), f(s.Cost.ServerCPUMicrosPerReq), f(s.Cost.DatapathCPUMicrosPerReq),
			f(s.Cost.SegmentsPerRequest), f(s.Cost.ContextSwitchesPerReq), i(s.Cost.TCPInSegs), i(s.Cost.TCPOutSegs),
			strconv.Itoa(procs), i(rss), i(pss),
			strconv.FormatBool(s.Proof.Verified), strconv.FormatBool(s.Interrupted), s.Error,
		}
		if err := cw.Write(row); err != nil {
			return fmt.Errorf("write csv: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	return nil
}

// benchUnit is one value of a benchfmt line.
type benchUnit struct {
	unit   string
	better string // "lower" or "higher"
	get    func(results.Step) float64
}

// benchUnits are the values of each benchfmt line. Unit names avoid "ns"
// and "MB", which benchstat would rescale.
var benchUnits = []benchUnit{
	{"p50-us", "lower", func(s results.Step) float64 { return s.LatencyUS.P50 }},
	{"p90-us", "lower", func(s results.Step) float64 { return s.LatencyUS.P90 }},
	{"p99-us", "lower", func(s results.Step) float64 { return s.LatencyUS.P99 }},
	{"p999-us", "lower", func(s results.Step) float64 { return s.LatencyUS.P999 }},
	{"max-us", "lower", func(s results.Step) float64 { return s.LatencyUS.Max }},
	{"mean-us", "lower", func(s results.Step) float64 { return s.LatencyUS.Mean }},
	{"achieved-rps", "higher", func(s results.Step) float64 { return s.AchievedRPS }},
	{"success-ratio", "higher", func(s results.Step) float64 { return s.SuccessRatio }},
	{"cpu-us/req", "lower", func(s results.Step) float64 { return s.Cost.CPUMicrosPerRequest }},
	{"segments/req", "lower", func(s results.Step) float64 { return s.Cost.SegmentsPerRequest }},
	{"ctxsw/req", "lower", func(s results.Step) float64 { return s.Cost.ContextSwitchesPerReq }},
}

// configValue makes s fit on one benchfmt configuration line.
func configValue(s string) []byte {
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		s = "unknown"
	}
	return []byte(s)
}

// WriteBenchfmt writes run in the Go benchmark format, one line per step
// (repetition) with at least one request, so that benchstat can compare
// runs:
//
//	goos: linux
//	kernel: 6.18.0
//	...
//	BenchmarkMesh/datapath=none/rate=500 1 38 p50-us 75 p99-us ...
//
// Configuration lines carry the environment; unit lines say which
// direction is better. The calibration step, when present, is written as
// BenchmarkCalibration/rate=R.
func WriteBenchfmt(w io.Writer, run *results.Run) error {
	bw := benchfmt.NewWriter(w)
	for _, u := range benchUnits {
		md := &benchfmt.UnitMetadata{
			UnitMetadataKey: benchfmt.UnitMetadataKey{Unit: u.unit, Key: "better"},
			OrigUnit:        u.unit,
			Value:           u.better,
		}
		if err := bw.Write(md); err != nil {
			return fmt.Errorf("write benchfmt: %w", err)
		}
	}
	e := run.Environment
	config := []benchfmt.Config{
		{Key: "goos", Value: configValue(e.OS), File: true},
		{Key: "goarch", Value: configValue(e.Arch), File: true},
		{Key: "cpu", Value: configValue(e.CPUModel), File: true},
		{Key: "cores", Value: configValue(strconv.Itoa(e.Cores)), File: true},
		{Key: "kernel", Value: configValue(e.Kernel), File: true},
		{Key: "provider", Value: configValue(e.Provider), File: true},
		{Key: "meshbench-commit", Value: configValue(e.Commit), File: true},
		{Key: "meshbench-version", Value: configValue(e.Version), File: true},
		{Key: "run", Value: configValue(run.ID), File: true},
		{Key: "scenario", Value: configValue(scenarioName(run)), File: true},
	}
	write := func(name string, s results.Step) error {
		res := &benchfmt.Result{Config: config, Name: benchfmt.Name(name), Iters: 1}
		for _, u := range benchUnits {
			res.Values = append(res.Values, benchfmt.Value{Value: finite(u.get(s)), Unit: u.unit})
		}
		if err := bw.Write(res); err != nil {
			return fmt.Errorf("write benchfmt: %w", err)
		}
		return nil
	}
	if c := run.Calibration; c != nil && c.Requests > 0 {
		if err := write("Calibration/rate="+fmtRate(c.OfferedRPS), *c); err != nil {
			return err
		}
	}
	for _, s := range run.Steps {
		if s.Requests == 0 {
			continue
		}
		if err := write(benchName(s.Datapath, s.OfferedRPS), s); err != nil {
			return err
		}
	}
	return nil
}

// benchName is the benchmark name of a datapath × rate (without the
// "Benchmark" prefix).
func benchName(dp string, rate float64) string {
	return "Mesh/datapath=" + benchNamePart(dp) + "/rate=" + fmtRate(rate)
}

// benchNamePart keeps a name part free of the characters benchfmt uses as
// separators.
func benchNamePart(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '/', '=', ' ', '\t', '\n', '\r':
			return '_'
		}
		return r
	}, s)
}
