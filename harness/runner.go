package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/harness/chaos"
	"github.com/meshbench/meshbench/harness/doctor"
	"github.com/meshbench/meshbench/harness/metrics"
	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/scenarios"
)

// ResultsFile is the name of the results file in the output directory.
const ResultsFile = "results.json"

// TeardownTimeout bounds teardown after the run's context has ended.
const TeardownTimeout = 60 * time.Second

// Options configure a run.
type Options struct {
	// Scenario is the validated scenario; ScenarioPath and ScenarioSource
	// are kept in the results as written.
	Scenario       *scenarios.Scenario
	ScenarioPath   string
	ScenarioSource []byte
	// OutDir receives results.json; it is created if missing.
	OutDir string
	// Provider builds the clusters.
	Provider testbed.Provider
	// NewDatapath returns a fresh datapath by name.
	NewDatapath func(name string) (datapaths.Datapath, error)
	// Exec is the command prefix that runs a meshbench subcommand in a pod
	// (default: this executable).
	Exec []string
	// Retain keeps the cluster of a failed datapath for inspection instead
	// of tearing it down; `meshbench down` removes it later.
	Retain bool
	// RunID is carried in every object's name; default: random.
	RunID string
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Progress, when set, is called as the run advances.
	Progress func(Event)
	// AfterStep, when set, is called after each measured step; a non-nil
	// error fails the datapath (tests use it to inject failures).
	AfterStep func(ctx context.Context, step *results.Step) error

	// Test seams: the runner's reads of the testbed from outside, each
	// defaulting to the real one. Tests replace them to run the runner on
	// a fake provider, whose pods have no namespace to read.

	// WaitEcho waits until the echo server of every pod answers (default
	// datapaths.WaitEcho).
	WaitEcho func(ctx context.Context, pods []*testbed.Pod) error
	// ReadEchoStats reads the counters of a pod's echo server, the
	// calibration step's proof (default datapaths.ReadEchoStats).
	ReadEchoStats func(ctx context.Context, pod *testbed.Pod) (datapaths.EchoStats, error)
	// Snapshot reads processes and network namespaces for the proof's
	// client TCP counters and the step's cost (default
	// metrics.TakeSnapshot).
	Snapshot func(ctx context.Context, pids []int, netns []string) (*metrics.Snapshot, error)
	// NoiseProbe measures the machine's timer wake-up lateness at the
	// start of the run, for the results' noise fingerprint (default
	// ProbeNoise).
	NoiseProbe func(ctx context.Context) []results.TimerProbe
}

// Event reports progress.
type Event struct {
	// Phase is what is happening: "create", "install", "prove", "calibrate",
	// "load", "teardown", "done", "failed".
	Phase       string
	Datapath    string
	Repetition  int
	Repetitions int
	Rate        int
	// Step counts measured steps: the current one (1-based) of Steps.
	Step, Steps int
	// Load is the duration of the current load (warm-up included).
	Load time.Duration
	// Remaining is the estimated time left in the run.
	Remaining time.Duration
	Err       error
}

// Run runs the scenario and returns what it measured. The returned Run is
// never nil once the output directory exists: on error or cancellation it
// holds the steps that completed, and results.json has been written with
// the matching status. The error joins every datapath's failure.
func Run(ctx context.Context, opts Options) (*results.Run, error) {
	r, err := newRunner(opts)
	if err != nil {
		return nil, err
	}
	return r.run(ctx)
}

type runner struct {
	opts   Options
	sc     *scenarios.Scenario
	log    *slog.Logger
	res    *results.Run
	path   string
	start  time.Time
	steps  int // measured steps done
	total  int
	calibr bool // calibration still to do
	// faultImpl is the implementation of each fault on this host, found
	// once per run when the scenario has a chaos timeline.
	faultImpl map[string]string
}

func newRunner(opts Options) (*runner, error) {
	if opts.Scenario == nil {
		return nil, errors.New("harness: no scenario")
	}
	if opts.Provider == nil {
		return nil, errors.New("harness: no provider")
	}
	if opts.NewDatapath == nil {
		return nil, errors.New("harness: no datapath constructor")
	}
	if opts.OutDir == "" {
		return nil, errors.New("harness: no output directory")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if len(opts.Exec) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find meshbench executable: %w", err)
		}
		opts.Exec = []string{exe}
	}
	if opts.RunID == "" {
		opts.RunID = NewRunID()
	}
	if opts.WaitEcho == nil {
		opts.WaitEcho = datapaths.WaitEcho
	}
	if opts.ReadEchoStats == nil {
		opts.ReadEchoStats = datapaths.ReadEchoStats
	}
	if opts.Snapshot == nil {
		opts.Snapshot = metrics.TakeSnapshot
	}
	if opts.NoiseProbe == nil {
		opts.NoiseProbe = ProbeNoise
	}
	// Check every datapath exists before creating anything.
	for _, name := range opts.Scenario.Datapaths {
		if _, err := opts.NewDatapath(name); err != nil {
			return nil, fmt.Errorf("datapath %s: %w", name, err)
		}
	}
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("create output directory: %w", err)
	}
	sc := opts.Scenario
	resolved, err := sc.Resolved()
	if err != nil {
		return nil, fmt.Errorf("encode scenario: %w", err)
	}
	r := &runner{
		opts: opts,
		sc:   sc,
		log:  opts.Logger.With("run", opts.RunID),
		path: filepath.Join(opts.OutDir, ResultsFile),
		res: &results.Run{
			Schema:      results.Schema,
			ID:          opts.RunID,
			Status:      results.StatusRunning,
			Environment: Environment(opts.Provider.Name()),
			Scenario: results.ScenarioCopy{
				Path:     opts.ScenarioPath,
				Source:   string(opts.ScenarioSource),
				Resolved: resolved,
			},
			Steps:     []results.Step{},
			Summaries: []results.Summary{},
		},
		total:  len(sc.Datapaths) * sc.Repetitions * len(sc.Load.Rates),
		calibr: sc.Load.Calibrate == nil || *sc.Load.Calibrate,
	}
	return r, nil
}

// NewRunID returns a random 6-hex-digit run id.
func NewRunID() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (r *runner) run(ctx context.Context) (*results.Run, error) {
	r.start = time.Now()
	r.res.Started = r.start.UTC()
	// The noise fingerprint is taken first, on an idle machine: nothing of
	// the run exists yet.
	r.res.Environment.Noise = &results.Noise{Timer: r.opts.NoiseProbe(ctx)}
	if err := r.save(); err != nil {
		return r.res, err
	}
	if len(r.sc.Chaos) > 0 {
		// Probe once, before any load, which implementation each fault
		// uses on this host (the probe creates and removes a namespace).
		r.faultImpl = chaos.FromDoctor(doctor.Check(ctx, doctor.Options{Logger: r.log}))
	}
	// Repetitions are interleaved: repetition 1 of every datapath, then
	// repetition 2 of every datapath, and so on, so that drift of the
	// machine over the run (a noisy neighbour, thermal throttling, a
	// cron job) spreads evenly over the datapaths instead of landing on
	// whichever one runs at the time. Every repetition builds a fresh
	// cluster and installs its datapath in either order, so interleaving
	// costs nothing. Step.Sequence and Step.Started record the order.
	r.res.RepetitionOrder = results.OrderInterleaved
	failed := map[string]bool{}
	var errs []error
loop:
	for rep := 1; rep <= r.sc.Repetitions; rep++ {
		for _, dp := range r.sc.Datapaths {
			if ctx.Err() != nil {
				break loop
			}
			if failed[dp] {
				// A datapath that failed would fail the same way again:
				// its later repetitions are skipped, their steps counted
				// as done.
				r.steps += len(r.sc.Load.Rates)
				continue
			}
			done := r.steps // before this repetition's steps
			if err := r.cycle(ctx, dp, rep); err != nil {
				if ctx.Err() != nil {
					r.log.Info("run interrupted", "datapath", dp, "err", err)
					break loop
				}
				err = fmt.Errorf("datapath %s repetition %d: %w", dp, rep, err)
				r.log.Error("datapath failed", "datapath", dp, "err", err)
				r.progress(Event{Phase: "failed", Datapath: dp, Repetition: rep, Err: err})
				errs = append(errs, err)
				failed[dp] = true
				// Count this repetition's steps as done (cycle counted
				// those it began).
				r.steps = done + len(r.sc.Load.Rates)
			}
		}
	}
	err := errors.Join(errs...)
	switch {
	case ctx.Err() != nil:
		r.res.Status = results.StatusInterrupted
		r.res.Error = "interrupted: " + context.Cause(ctx).Error()
		err = errors.Join(err, fmt.Errorf("run interrupted: %w", context.Cause(ctx)))
	case err != nil:
		r.res.Status = results.StatusFailed
		r.res.Error = err.Error()
	default:
		r.res.Status = results.StatusOK
	}
	r.res.Finished = time.Now().UTC()
	r.res.Summaries = results.Summarize(r.res.Steps)
	if serr := r.save(); serr != nil {
		err = errors.Join(err, serr)
	}
	r.progress(Event{Phase: "done"})
	return r.res, err
}

func (r *runner) save() error {
	r.res.Summaries = results.Summarize(r.res.Steps)
	return results.WriteFile(r.path, r.res)
}

// remaining estimates the time left from the steps still to run.
func (r *runner) remaining() time.Duration {
	left := r.total - r.steps
	if left < 0 {
		left = 0
	}
	per := time.Duration(r.sc.Load.Warmup+r.sc.Load.Duration) + scenarios.StepOverhead
	cycles := left / max(1, len(r.sc.Load.Rates))
	return time.Duration(left)*per + time.Duration(cycles)*scenarios.CycleOverhead
}

func (r *runner) progress(ev Event) {
	if r.opts.Progress == nil {
		return
	}
	ev.Steps = r.total
	if ev.Step == 0 {
		ev.Step = r.steps
	}
	ev.Repetitions = r.sc.Repetitions
	ev.Remaining = r.remaining()
	r.opts.Progress(ev)
}
