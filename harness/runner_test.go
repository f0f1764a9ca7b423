package harness_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshbench/meshbench/datapaths"
	dpfake "github.com/meshbench/meshbench/datapaths/fake"
	"github.com/meshbench/meshbench/harness"
	"github.com/meshbench/meshbench/harness/metrics"
	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/stream"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/harness/testbed/fake"
	"github.com/meshbench/meshbench/scenarios"
)

// These tests run the runner on the fake provider and fake datapaths: no
// namespace, process or /proc read is real, so they need no root and take
// milliseconds. The fake load client writes a canned stream: warmupOf(rate)
// successes in the warm-up and measuredOf(rate) in the measured window.

func warmupOf(rate int) int64   { return int64(rate / 2) }
func measuredOf(rate int) int64 { return int64(rate) }

// fakeRun is one run of the runner on fakes, and what the fakes saw.
type fakeRun struct {
	opts   harness.Options
	prov   *fake.Provider
	cancel context.CancelFunc

	// Hooks of the case, read by the fakes.
	installErr map[string]error
	failProof  string // "datapath/rep/rate" whose measured window's proof fails
	interrupt  string // "datapath/rep/rate" cancelled in its measured window

	mu      sync.Mutex
	trace   []string
	events  []harness.Event
	current string // "datapath/rep/rate" of the step being measured
	dps     []*dpfake.Datapath
	echo    int // calls of ReadEchoStats
	snaps   int // calls of Snapshot
}

func newFakeRun(t *testing.T, src string) *fakeRun {
	t.Helper()
	sc, err := scenarios.Parse("fake.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRun{}
	f.prov = &fake.Provider{
		Programs: map[string]fake.Program{"load": f.load},
		Trace:    f.record,
	}
	f.opts = harness.Options{
		Scenario:       sc,
		ScenarioPath:   "fake.yaml",
		ScenarioSource: []byte(src),
		OutDir:         t.TempDir(),
		Provider:       f.prov,
		NewDatapath:    f.newDatapath,
		Exec:           []string{"/nonexistent/meshbench"},
		RunID:          "f00d",
		Progress:       f.progress,
		WaitEcho:       func(context.Context, []*testbed.Pod) error { return nil },
		ReadEchoStats:  f.readEchoStats,
		Snapshot:       f.snapshot,
		NoiseProbe:     fakeNoise,
	}
	return f
}

// fakeNoise stands in for the timer wake-up probe, which takes a fraction
// of a second of real sleeps.
func fakeNoise(context.Context) []results.TimerProbe {
	return []results.TimerProbe{{SleepUS: 100, Samples: 300, OvershootP50US: 55, OvershootP99US: 180}}
}

func (f *fakeRun) run() (*results.Run, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.cancel = cancel
	return harness.Run(ctx, f.opts)
}

func (f *fakeRun) record(ev string) {
	f.mu.Lock()
	f.trace = append(f.trace, ev)
	f.mu.Unlock()
}

func (f *fakeRun) progress(ev harness.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, ev)
	if ev.Phase == "load" {
		f.current = fmt.Sprintf("%s/%d/%d", ev.Datapath, ev.Repetition, ev.Rate)
	}
}

func (f *fakeRun) newDatapath(name string) (datapaths.Datapath, error) {
	d := &dpfake.Datapath{ID: name, InstallErr: f.installErr[name], Trace: f.record}
	if name == "sidecar" {
		d.Memory = &results.Footprint{BPFBytes: 4096, BPFCopies: 1, Basis: "fake"}
		d.Notes = []string{"cluster echo: max_retries has no equivalent"}
	}
	d.VerifyFunc = func(delta map[string]int64, w datapaths.Work) []results.ProofCheck {
		f.mu.Lock()
		fail := f.current == f.failProof && w.Successes != warmupOf(rateOf(f.current))
		f.mu.Unlock()
		return []results.ProofCheck{{Name: "the fake path carried the window", Want: "ok", Figure: "—", OK: !fail}}
	}
	f.mu.Lock()
	f.dps = append(f.dps, d)
	f.mu.Unlock()
	return d, nil
}

func rateOf(step string) int {
	i := strings.LastIndexByte(step, '/')
	n, _ := strconv.Atoi(step[i+1:])
	return n
}

// load is the fake load client: it writes a mark, two windows and a
// summary, and exits. In the step to interrupt it waits, after the mark,
// until the runner has read the datapath's counters, cancels the run, and
// reports what it measured once told to stop.
func (f *fakeRun) load(ctx context.Context, p *fake.Proc) error {
	i := slices.Index(p.Spec.Args, "--rate")
	rate, err := strconv.Atoi(p.Spec.Args[i+1])
	if err != nil {
		return err
	}
	f.record("load " + strconv.Itoa(rate))
	f.mu.Lock()
	interrupt := f.interrupt != "" && f.current == f.interrupt
	var dp *dpfake.Datapath
	if len(f.dps) > 0 {
		dp = f.dps[len(f.dps)-1]
	}
	f.mu.Unlock()
	var reads int
	if interrupt {
		reads = dp.Calls().Counters
	}
	mark := time.Now()
	if err := stream.WriteLine(p.Stdout, stream.Mark{Type: stream.TypeMark, Time: mark}); err != nil {
		return err
	}
	m := measuredOf(rate)
	sum := stream.Summary{
		Type: stream.TypeSummary, Targets: []string{"198.18.1.10:8080"}, OfferedRPS: float64(rate),
		Warmup: results.Duration(time.Second), Duration: results.Duration(time.Second), Measured: results.Duration(time.Second),
		WarmupRequests: warmupOf(rate), Sent: m, Requests: m, Successes: m, SuccessRatio: 1,
		SentRPS: float64(m), AchievedRPS: float64(m), Connections: 4, ConnectionsOpened: 4, Mark: mark,
		WarmupWork: stream.Work{Successes: warmupOf(rate), BytesSent: 100 * warmupOf(rate), BytesReceived: 100 * warmupOf(rate), ConnectionsOpened: 4},
		Work:       stream.Work{Successes: m, BytesSent: 100 * m, BytesReceived: 100 * m},
		LatencyUS:  results.Latency{Mean: 60, P50: 50, P90: 80, P99: 120, P999: 150, Max: 200},
		Histogram: results.Histogram{SignificantFigures: 3, Buckets: []results.Bucket{
			{UpperUS: 50, Count: m / 2}, {UpperUS: 120, Count: m - m/2 - 1}, {UpperUS: 200, Count: 1}}},
		ClientCPUSeconds: 0.05, ClientContextSwitches: 2 * m, ClientRSSBytes: 8 << 20,
	}
	if interrupt {
		for deadline := time.Now().Add(10 * time.Second); dp.Calls().Counters == reads; {
			if time.Now().After(deadline) {
				return errors.New("the runner never read the counters after the mark")
			}
			time.Sleep(time.Millisecond)
		}
		f.record("cancel")
		f.cancel()
		select {
		case <-p.Signals:
		case <-ctx.Done():
			return nil
		}
		sum.Interrupted = true
		sum.Measured = results.Duration(400 * time.Millisecond)
	}
	for s := range 2 {
		w := stream.Window{Type: stream.TypeWindow, Window: results.Window{StartS: float64(s) / 2, Requests: m / 2, Successes: m / 2, SuccessRatio: 1, P50US: 50, P99US: 120}}
		if err := stream.WriteLine(p.Stdout, w); err != nil {
			return err
		}
	}
	return stream.WriteLine(p.Stdout, sum)
}

// readEchoStats serves the calibration's proof: the client pod's echo
// server counts, at the runner's three reads of a step (before the load,
// at the mark, at the end), nothing, the warm-up, and the whole step, all
// from loopback.
func (f *fakeRun) readEchoStats(ctx context.Context, pod *testbed.Pod) (datapaths.EchoStats, error) {
	f.mu.Lock()
	f.echo++
	n := f.echo
	f.mu.Unlock()
	rate := f.opts.Scenario.Load.Rates[0]
	step := warmupOf(rate) + measuredOf(rate)
	req := int64((n-1)/3) * step
	switch (n - 1) % 3 {
	case 1:
		req += warmupOf(rate)
	case 2:
		req += step
	}
	return datapaths.EchoStats{Requests: req, ByPeer: map[string]int64{"127.0.0.1": req}}, nil
}

// snapshot makes up counters that grow with every call: 10 ms of CPU and
// 100 context switches per process, 100 segments each way per namespace.
func (f *fakeRun) snapshot(ctx context.Context, pids []int, netns []string) (*metrics.Snapshot, error) {
	f.mu.Lock()
	f.snaps++
	n := int64(f.snaps)
	f.mu.Unlock()
	s := &metrics.Snapshot{Time: time.Now(), Procs: map[int]metrics.ProcStat{}, TCP: map[string]metrics.TCP{}}
	for _, pid := range pids {
		s.Procs[pid] = metrics.ProcStat{PID: pid, Comm: "meshbench", StartTicks: 1, CPUSeconds: 0.01 * float64(n),
			VoluntaryCtxt: 100 * n, RSSBytes: 16 << 20, PSSBytes: 12 << 20}
	}
	for _, ns := range netns {
		s.TCP[ns] = metrics.TCP{InSegs: 100 * n, OutSegs: 100 * n}
	}
	return s, nil
}

// outline is the trace reduced to what a case pins down: cluster
// create/destroy, datapath install/uninstall, load client runs (with their
// rate) and the cancel.
func (f *fakeRun) outline() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, ev := range f.trace {
		verb, arg, _ := strings.Cut(ev, " ")
		switch verb {
		case "create", "destroy":
			out = append(out, verb)
		case "install", "uninstall", "load", "cancel":
			out = append(out, strings.TrimSpace(verb+" "+arg))
		}
	}
	return out
}

// steps lists the load events as "datapath/rep/rate#step".
func (f *fakeRun) steps() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, ev := range f.events {
		if ev.Phase == "load" {
			out = append(out, fmt.Sprintf("%s/%d/%d#%d", ev.Datapath, ev.Repetition, ev.Rate, ev.Step))
		}
	}
	return out
}

// cycles joins outlines of clusters' lives, each a "|"-separated list of
// events.
func cycles(cs ...string) []string {
	var out []string
	for _, c := range cs {
		for _, ev := range strings.Split(c, "|") {
			out = append(out, strings.TrimSpace(ev))
		}
	}
	return out
}

func stepIDs(steps []results.Step) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = fmt.Sprintf("%s/%d/%.0f", s.Datapath, s.Repetition, s.OfferedRPS)
	}
	return out
}

func TestRunnerFlow(t *testing.T) {
	injected := errors.New("injected")
	tests := []struct {
		name  string
		src   string
		setup func(f *fakeRun)
		// want
		status  string
		err     string // substring of the run's error ("" for none)
		outline []string
		loads   []string // load events, "datapath/rep/rate#step"
		steps   []string // steps in results.json, "datapath/rep/rate"
		final   int      // Step of the "done" event
		calib   bool     // a calibration step was recorded
	}{
		{
			name:   "steps in order: repetition × datapath × rate (interleaved), calibration first",
			src:    "datapaths: [none, sidecar]\nrepetitions: 2\nload: {rates: [100, 200]}\n",
			status: results.StatusOK,
			outline: cycles(
				"create | load 100 | install none | load 100 | load 200 | uninstall none | destroy",
				"create | install sidecar | load 100 | load 200 | uninstall sidecar | destroy",
				"create | install none | load 100 | load 200 | uninstall none | destroy",
				"create | install sidecar | load 100 | load 200 | uninstall sidecar | destroy"),
			loads: []string{"none/1/100#1", "none/1/200#2", "sidecar/1/100#3", "sidecar/1/200#4",
				"none/2/100#5", "none/2/200#6", "sidecar/2/100#7", "sidecar/2/200#8"},
			steps: []string{"none/1/100", "none/1/200", "sidecar/1/100", "sidecar/1/200",
				"none/2/100", "none/2/200", "sidecar/2/100", "sidecar/2/200"},
			final: 8, calib: true,
		},
		{
			name:    "no calibration when the scenario turns it off",
			src:     "datapaths: [none]\nload: {rates: [100], calibrate: false}\n",
			status:  results.StatusOK,
			outline: cycles("create | install none | load 100 | uninstall none | destroy"),
			loads:   []string{"none/1/100#1"},
			steps:   []string{"none/1/100"},
			final:   1,
		},
		{
			name:   "a failing install stops that datapath and moves on",
			src:    "datapaths: [none, sidecar, afxdp]\nrepetitions: 2\nload: {rates: [100, 200]}\n",
			setup:  func(f *fakeRun) { f.installErr = map[string]error{"sidecar": injected} },
			status: results.StatusFailed, err: "datapath sidecar repetition 1: install: injected",
			outline: cycles(
				"create | load 100 | install none | load 100 | load 200 | uninstall none | destroy",
				"create | install sidecar | uninstall sidecar | destroy",
				"create | install afxdp | load 100 | load 200 | uninstall afxdp | destroy",
				"create | install none | load 100 | load 200 | uninstall none | destroy",
				"create | install afxdp | load 100 | load 200 | uninstall afxdp | destroy"),
			loads: []string{"none/1/100#1", "none/1/200#2", "afxdp/1/100#5", "afxdp/1/200#6",
				"none/2/100#7", "none/2/200#8", "afxdp/2/100#11", "afxdp/2/200#12"},
			steps: []string{"none/1/100", "none/1/200", "afxdp/1/100", "afxdp/1/200",
				"none/2/100", "none/2/200", "afxdp/2/100", "afxdp/2/200"},
			final: 12, calib: true,
		},
		{
			name:   "a failed proof at rate 2 of 3 fails the step and the datapath",
			src:    "datapaths: [none, sidecar]\nrepetitions: 2\nload: {rates: [100, 200, 300]}\n",
			setup:  func(f *fakeRun) { f.failProof = "none/1/200" },
			status: results.StatusFailed, err: "datapath none repetition 1: rate 200: proof of path failed: the fake path carried the window",
			outline: cycles(
				"create | load 100 | install none | load 100 | load 200 | uninstall none | destroy",
				"create | install sidecar | load 100 | load 200 | load 300 | uninstall sidecar | destroy",
				"create | install sidecar | load 100 | load 200 | load 300 | uninstall sidecar | destroy"),
			loads: []string{"none/1/100#1", "none/1/200#2",
				"sidecar/1/100#4", "sidecar/1/200#5", "sidecar/1/300#6", "sidecar/2/100#10", "sidecar/2/200#11", "sidecar/2/300#12"},
			steps: []string{"none/1/100", "none/1/200",
				"sidecar/1/100", "sidecar/1/200", "sidecar/1/300", "sidecar/2/100", "sidecar/2/200", "sidecar/2/300"},
			final: 12, calib: true,
		},
		{
			name: "a failure after a step of the second repetition skips the rest of the datapath",
			src:  "datapaths: [none, sidecar]\nrepetitions: 3\nload: {rates: [100, 200]}\n",
			setup: func(f *fakeRun) {
				f.opts.AfterStep = func(ctx context.Context, s *results.Step) error {
					if s.Datapath == "none" && s.Repetition == 2 && s.OfferedRPS == 100 {
						return injected
					}
					return nil
				}
			},
			status: results.StatusFailed, err: "datapath none repetition 2: injected",
			outline: cycles(
				"create | load 100 | install none | load 100 | load 200 | uninstall none | destroy",
				"create | install sidecar | load 100 | load 200 | uninstall sidecar | destroy",
				"create | install none | load 100 | uninstall none | destroy",
				"create | install sidecar | load 100 | load 200 | uninstall sidecar | destroy",
				"create | install sidecar | load 100 | load 200 | uninstall sidecar | destroy"),
			loads: []string{"none/1/100#1", "none/1/200#2", "sidecar/1/100#3", "sidecar/1/200#4",
				"none/2/100#5", "sidecar/2/100#7", "sidecar/2/200#8", "sidecar/3/100#11", "sidecar/3/200#12"},
			steps: []string{"none/1/100", "none/1/200", "sidecar/1/100", "sidecar/1/200",
				"none/2/100", "sidecar/2/100", "sidecar/2/200", "sidecar/3/100", "sidecar/3/200"},
			final: 12, calib: true,
		},
		{
			name: "a cluster that cannot be created fails the repetition",
			src:  "datapaths: [none, sidecar]\nrepetitions: 2\nload: {rates: [100]}\n",
			setup: func(f *fakeRun) {
				n := 0
				f.prov.FailCreate = func(testbed.Spec) error {
					if n++; n == 3 {
						return injected
					}
					return nil
				}
			},
			status: results.StatusFailed, err: "datapath none repetition 2: create cluster: injected",
			outline: cycles(
				"create | load 100 | install none | load 100 | uninstall none | destroy",
				"create | install sidecar | load 100 | uninstall sidecar | destroy",
				"create",
				"create | install sidecar | load 100 | uninstall sidecar | destroy"),
			loads: []string{"none/1/100#1", "sidecar/1/100#2", "sidecar/2/100#4"},
			steps: []string{"none/1/100", "sidecar/1/100", "sidecar/2/100"},
			final: 4, calib: true,
		},
		{
			name: "an echo server that does not start: cluster destroyed, calibration in the next cycle",
			src:  "datapaths: [none, sidecar]\nload: {rates: [100]}\n",
			setup: func(f *fakeRun) {
				f.prov.FailStart = func(s testbed.ProcessSpec, pod *testbed.Pod, _ *testbed.Node) error {
					if s.Name == "echo" && pod.Name == "n1-p0" && len(f.prov.Clusters()) == 1 {
						return injected
					}
					return nil
				}
			},
			status: results.StatusFailed, err: "datapath none repetition 1: start echo in pod n1-p0",
			outline: cycles(
				"create | destroy",
				"create | load 100 | install sidecar | load 100 | uninstall sidecar | destroy"),
			loads: []string{"sidecar/1/100#2"},
			steps: []string{"sidecar/1/100"},
			final: 2, calib: true,
		},
		{
			name:   "a failing uninstall is reported and the cluster is still destroyed",
			src:    "datapaths: [none, sidecar]\nrepetitions: 2\nload: {rates: [100]}\n",
			setup:  func(f *fakeRun) { f.opts.NewDatapath = uninstallFails(f, "none", injected) },
			status: results.StatusFailed, err: "datapath none repetition 1: teardown: injected",
			outline: cycles(
				"create | load 100 | install none | load 100 | uninstall none | destroy",
				"create | install sidecar | load 100 | uninstall sidecar | destroy",
				"create | install sidecar | load 100 | uninstall sidecar | destroy"),
			loads: []string{"none/1/100#1", "sidecar/1/100#2", "sidecar/2/100#4"},
			steps: []string{"none/1/100", "sidecar/1/100", "sidecar/2/100"},
			final: 4, calib: true,
		},
		{
			name: "retain keeps a failed cluster: no uninstall, no destroy",
			src:  "datapaths: [none, sidecar]\nload: {rates: [100]}\n",
			setup: func(f *fakeRun) {
				f.opts.Retain = true
				f.installErr = map[string]error{"none": injected}
			},
			status: results.StatusFailed, err: "datapath none repetition 1: install: injected",
			outline: cycles(
				"create | load 100 | install none",
				"create | install sidecar | load 100 | uninstall sidecar | destroy"),
			loads: []string{"sidecar/1/100#2"},
			steps: []string{"sidecar/1/100"},
			final: 2, calib: true,
		},
		{
			name:   "interrupted in a measured window: step kept, teardown ran, nothing after",
			src:    "datapaths: [none, sidecar]\nrepetitions: 2\nload: {rates: [100, 200]}\n",
			setup:  func(f *fakeRun) { f.interrupt = "none/1/200" },
			status: results.StatusInterrupted, err: "run interrupted: context canceled",
			outline: cycles(
				"create | load 100 | install none | load 100 | load 200 | cancel | uninstall none | destroy"),
			loads: []string{"none/1/100#1", "none/1/200#2"},
			steps: []string{"none/1/100", "none/1/200"},
			final: 2, calib: true,
		},
		{
			name: "interrupted between steps: teardown ran, nothing after",
			src:  "datapaths: [none, sidecar]\nload: {rates: [100, 200]}\n",
			setup: func(f *fakeRun) {
				f.opts.Progress = func(ev harness.Event) {
					f.progress(ev)
					if ev.Phase == "load" && ev.Rate == 200 {
						f.record("cancel")
						f.cancel()
					}
				}
			},
			status: results.StatusInterrupted, err: "run interrupted: context canceled",
			outline: cycles(
				"create | load 100 | install none | load 100 | cancel | uninstall none | destroy"),
			loads: []string{"none/1/100#1", "none/1/200#2"},
			steps: []string{"none/1/100"},
			final: 2, calib: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeRun(t, tt.src)
			if tt.setup != nil {
				tt.setup(f)
			}
			start := time.Now()
			run, err := f.run()
			if el := time.Since(start); el > 5*time.Second {
				t.Errorf("run took %s on fakes", el)
			}
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("run: %v", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("run error %v, want %q", err, tt.err)
			}
			if tt.status == results.StatusInterrupted && !errors.Is(err, context.Canceled) {
				t.Errorf("interrupted run's error %v is not context.Canceled", err)
			}
			if got := f.outline(); !slices.Equal(got, tt.outline) {
				t.Errorf("outline\n got %q\nwant %q", got, tt.outline)
			}
			if got := f.steps(); !slices.Equal(got, tt.loads) {
				t.Errorf("load events\n got %q\nwant %q", got, tt.loads)
			}

			// results.json is written whatever happened, and matches.
			file, rerr := results.ReadFile(filepath.Join(f.opts.OutDir, harness.ResultsFile))
			if rerr != nil {
				t.Fatal(rerr)
			}
			if file.Status != tt.status || run.Status != tt.status {
				t.Errorf("status: file %q, returned %q, want %q", file.Status, run.Status, tt.status)
			}
			if got := stepIDs(file.Steps); !slices.Equal(got, tt.steps) {
				t.Errorf("steps in results.json\n got %q\nwant %q", got, tt.steps)
			}
			if (file.Calibration != nil) != tt.calib {
				t.Errorf("calibration recorded: %v, want %v", file.Calibration != nil, tt.calib)
			}
			if tt.err != "" && !strings.Contains(file.Error, strings.TrimPrefix(tt.err, "run ")) {
				t.Errorf("results.json error %q, want %q", file.Error, tt.err)
			}
			for _, s := range file.Steps {
				want := s.Datapath+"/"+strconv.Itoa(s.Repetition)+"/"+strconv.FormatFloat(s.OfferedRPS, 'f', 0, 64) != f.failProof
				if s.Proof.Verified != want {
					t.Errorf("step %s/%d/%.0f: proof verified %v", s.Datapath, s.Repetition, s.OfferedRPS, s.Proof.Verified)
				}
			}
			for i, s := range file.Steps {
				if want := f.interrupt != "" && i == len(file.Steps)-1; s.Interrupted != want {
					t.Errorf("step %s/%d/%.0f: interrupted %v, want %v", s.Datapath, s.Repetition, s.OfferedRPS, s.Interrupted, want)
				}
			}

			// Progress: Step never exceeds Steps, and ends where the run
			// stopped (at Steps when it went through).
			f.mu.Lock()
			events := slices.Clone(f.events)
			f.mu.Unlock()
			for _, ev := range events {
				if ev.Step > ev.Steps || ev.Step < 0 {
					t.Errorf("event %s %s/%d: step %d of %d", ev.Phase, ev.Datapath, ev.Repetition, ev.Step, ev.Steps)
				}
			}
			if last := events[len(events)-1]; last.Phase != "done" || last.Step != tt.final {
				t.Errorf("last event %s, step %d of %d; want done, step %d", last.Phase, last.Step, last.Steps, tt.final)
			}

			// Every cluster was destroyed once, and every process it ran
			// has exited: except the one a failure retained, which
			// `meshbench down` removes.
			defer func() {
				if _, err := f.prov.Down(context.Background(), f.opts.RunID); err != nil {
					t.Errorf("down: %v", err)
				}
			}()
			for i, c := range f.prov.Clusters() {
				retained := f.opts.Retain && i == 0
				want := 1
				if retained {
					want = 0
				}
				if c.DestroyCalls() != want {
					t.Errorf("cluster %d destroyed %d times, want %d", i, c.DestroyCalls(), want)
				}
				for _, p := range c.Started() {
					if !p.Process.Exited() && !retained {
						t.Errorf("cluster %d: %s in %s still running", i, p.Spec.Name, p.Process.Pod)
					}
				}
			}
		})
	}
}

// uninstallFails returns f's datapath constructor, with Uninstall of the
// datapath named name failing with err.
func uninstallFails(f *fakeRun, name string, err error) func(string) (datapaths.Datapath, error) {
	return func(n string) (datapaths.Datapath, error) {
		d, _ := f.newDatapath(n)
		if n == name {
			d.(*dpfake.Datapath).UninstallErr = err
		}
		return d, nil
	}
}

func TestRunnerProgressPhases(t *testing.T) {
	f := newFakeRun(t, "datapaths: [none, sidecar]\nload: {rates: [100, 200]}\n")
	if _, err := f.run(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range f.events {
		s := ev.Phase
		if ev.Datapath != "" {
			s += " " + ev.Datapath
		}
		if ev.Rate != 0 {
			s += fmt.Sprintf(" %d", ev.Rate)
		}
		got = append(got, fmt.Sprintf("%s (%d/%d)", s, ev.Step, ev.Steps))
		if ev.Repetitions != 1 {
			t.Errorf("%s: repetitions %d, want 1", s, ev.Repetitions)
		}
		// The defaults: warm-up 2s, duration 10s.
		if ev.Phase == "load" && ev.Load != 12*time.Second {
			t.Errorf("%s: load %s, want 12s (warm-up and duration)", s, ev.Load)
		}
	}
	want := []string{
		"create none (0/4)", "calibrate none (0/4)", "install none (0/4)", "load none 100 (1/4)", "load none 200 (2/4)", "teardown none (2/4)",
		"create sidecar (2/4)", "install sidecar (2/4)", "load sidecar 100 (3/4)", "load sidecar 200 (4/4)", "teardown sidecar (4/4)",
		"done (4/4)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("progress\n got %q\nwant %q", got, want)
	}
	// Remaining counts down to zero as steps complete.
	if last := f.events[len(f.events)-1]; last.Remaining != 0 {
		t.Errorf("remaining at done: %s", last.Remaining)
	}
	if first := f.events[0]; first.Remaining <= f.events[len(f.events)-2].Remaining {
		t.Errorf("remaining did not go down: %s then %s", first.Remaining, f.events[len(f.events)-2].Remaining)
	}
}

func TestRunnerResultsFile(t *testing.T) {
	src := `
topology:
  nodes: 2
  pods_per_node: 2
  services: [{name: echo, replicas: 2}]
datapaths: [none, sidecar]
repetitions: 2
load: {rates: [100, 200], warmup: 1s, duration: 2s}
`
	f := newFakeRun(t, src)
	run, err := f.run()
	if err != nil {
		t.Fatal(err)
	}
	got, err := results.ReadFile(filepath.Join(f.opts.OutDir, harness.ResultsFile))
	if err != nil {
		t.Fatal(err)
	}
	if got.Schema != results.Schema || got.ID != "f00d" || got.Status != results.StatusOK || got.Error != "" {
		t.Errorf("header: schema %q id %q status %q error %q", got.Schema, got.ID, got.Status, got.Error)
	}
	if got.Started.IsZero() || got.Finished.Before(got.Started) || got.Environment.Provider != "fake" || got.Environment.Cores == 0 {
		t.Errorf("times %s..%s, environment %+v", got.Started, got.Finished, got.Environment)
	}
	if got.Scenario.Path != "fake.yaml" || got.Scenario.Source != src || len(got.Scenario.Resolved) == 0 {
		t.Errorf("scenario copy %+v", got.Scenario)
	}
	if len(got.Steps) != len(run.Steps) || len(got.Steps) != 8 {
		t.Fatalf("%d steps in the file, %d returned, want 8", len(got.Steps), len(run.Steps))
	}
	// The order the steps ran in is recorded: interleaved repetitions,
	// each step's place and start time.
	if got.RepetitionOrder != results.OrderInterleaved {
		t.Errorf("repetition order %q, want %q", got.RepetitionOrder, results.OrderInterleaved)
	}
	for i, s := range got.Steps {
		if s.Sequence != i+1 || s.Started.IsZero() || s.Started.Before(got.Started) ||
			i > 0 && s.Started.Before(got.Steps[i-1].Started) {
			t.Errorf("step %d (%s/%d/%.0f): sequence %d, started %s", i, s.Datapath, s.Repetition, s.OfferedRPS, s.Sequence, s.Started)
		}
	}
	// The noise fingerprint holds the timer probe and the calibration's
	// latency.
	if n := got.Environment.Noise; n == nil || got.Calibration == nil || len(n.Timer) != 1 || n.Timer[0].OvershootP99US != 180 ||
		n.CalibrationP50US != got.Calibration.LatencyUS.P50 || n.CalibrationP99US != 120 {
		t.Errorf("noise fingerprint %+v", n)
	}

	cal := got.Calibration
	if cal == nil {
		t.Fatal("no calibration")
	}
	// The calibration is proven by the client pod's echo server, over
	// loopback, for the warm-up and the measured window alike.
	if cal.Datapath != "calibration" || !cal.Proof.Verified || cal.Proof.Warmup == nil || !cal.Proof.Warmup.Verified ||
		cal.Proof.Counters["echo_requests"] != measuredOf(100) || cal.Proof.Warmup.Counters["echo_from_loopback"] != warmupOf(100) {
		t.Errorf("calibration %s: proof %+v", cal.Datapath, cal.Proof)
	}

	for i, s := range got.Steps {
		rate := []int{100, 200}[i%2]
		if s.Service != "echo" || s.Successes != measuredOf(rate) || s.SuccessRatio != 1 || s.LatencyUS.P99 != 120 ||
			len(s.Windows) != 2 || s.Histogram.SignificantFigures != 3 {
			t.Errorf("step %d: %+v", i, s)
		}
		if !s.Proof.Verified || s.Proof.Warmup == nil || !s.Proof.Warmup.Verified || s.Proof.Source != "the fake datapath's counters" {
			t.Errorf("step %d: proof %+v", i, s.Proof)
		}
		roles := map[string]int{}
		for _, p := range s.Processes {
			roles[p.Role]++
		}
		// Every pod's echo server, and the load client.
		if roles[results.RoleServer] != 4 || roles[results.RoleClient] != 1 || len(s.Processes) != 5 {
			t.Errorf("step %d: processes %+v", i, s.Processes)
		}
		if s.Cost.SegmentsPerRequest <= 0 || s.Cost.ClientCPUMicrosPerReq <= 0 || s.Cost.ServerCPUMicrosPerReq <= 0 {
			t.Errorf("step %d: cost %+v", i, s.Cost)
		}
		if fp := s.Footprint; (s.Datapath == "sidecar") != (fp != nil && fp.BPFBytes == 4096) {
			t.Errorf("step %d (%s): footprint %+v, want the datapath's own (none for none)", i, s.Datapath, fp)
		}
		if n := s.EngineNotes; (s.Datapath == "sidecar") != slices.Equal(n, []string{"cluster echo: max_retries has no equivalent"}) {
			t.Errorf("step %d (%s): engine notes %q, want the datapath's own (none for none)", i, s.Datapath, n)
		}
	}
	// The datapath's proof was given what the client counted in each
	// window: the measured window's, then the warm-up's.
	f.mu.Lock()
	dps := slices.Clone(f.dps)
	f.mu.Unlock()
	var installed int
	for _, d := range dps {
		c := d.Calls()
		if c.Install == 0 {
			continue // made to check the name
		}
		installed++
		if c != (dpfake.Calls{Install: 1, Uninstall: 1, Target: 2, Counters: 6, Verify: 4}) {
			t.Errorf("%s: calls %+v", d.Name(), c)
		}
		w := d.Works()
		if w[0].Successes != measuredOf(100) || w[1].Successes != warmupOf(100) || w[2].Successes != measuredOf(200) ||
			w[0].Slack < 1 || w[0].SlackWhy == "" || w[0].Protocol != "http" || w[0].ClientOutSegs <= 0 {
			t.Errorf("%s: works %+v", d.Name(), w)
		}
		env := d.Env()
		if env.Client == nil || env.Client.Name != harness.ClientPod || env.Load == nil || len(env.Load.Backends) != 2 {
			t.Errorf("%s: env %+v", d.Name(), env)
		}
	}
	if installed != 4 {
		t.Errorf("%d datapaths installed, want one per cycle (4)", installed)
	}

	// One summary per datapath × rate, over both repetitions.
	if len(got.Summaries) != 4 {
		t.Fatalf("summaries %+v", got.Summaries)
	}
	for _, s := range got.Summaries {
		if s.Repetitions != 2 || !s.ProofVerified || s.P99US.Median != 120 {
			t.Errorf("summary %s %.0f: %+v", s.Datapath, s.OfferedRPS, s)
		}
	}
}

// The load client is told to stop (SIGTERM) when the run is interrupted,
// and its processes are stopped with the cluster.
func TestRunnerInterruptStopsLoad(t *testing.T) {
	f := newFakeRun(t, "datapaths: [none]\nload: {rates: [100]}\n")
	f.interrupt = "none/1/100"
	if _, err := f.run(); !errors.Is(err, context.Canceled) {
		t.Fatalf("run: %v", err)
	}
	c := f.prov.Clusters()[0]
	var loads int
	for _, p := range c.Started() {
		if p.Spec.Name != "load" {
			continue
		}
		loads++
		if p.Spec.Role != results.RoleClient || p.Pod.Name != harness.ClientPod {
			t.Errorf("load client started as %s in %s", p.Spec.Role, p.Pod.Name)
		}
		sent := p.Sent()
		if loads == 2 && (len(sent) == 0 || sent[0] != syscall.SIGTERM) {
			t.Errorf("interrupted load client got signals %v, want SIGTERM first", sent)
		}
	}
	if loads != 2 {
		t.Errorf("%d load clients, want the calibration's and the step's", loads)
	}
}
