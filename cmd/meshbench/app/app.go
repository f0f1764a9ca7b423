// Package app is the meshbench command line: it maps subcommands and flags to
// library options. Only main exits.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/meshbench/meshbench/datapaths/afxdp"
	"github.com/meshbench/meshbench/datapaths/all"
	"github.com/meshbench/meshbench/datapaths/proxy"
	"github.com/meshbench/meshbench/harness"
	"github.com/meshbench/meshbench/harness/agent"
	"github.com/meshbench/meshbench/harness/chaos"
	"github.com/meshbench/meshbench/harness/doctor"
	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/workload"
	"github.com/meshbench/meshbench/internal/staticbin"
	"github.com/meshbench/meshbench/internal/version"
	"github.com/meshbench/meshbench/reports"
	"github.com/meshbench/meshbench/scenarios"
)

// ErrUsage marks a command-line mistake; main exits with status 2 for it.
var ErrUsage = errors.New("usage")

// ErrRegression is returned by compare when it finds a significant
// regression.
var ErrRegression = errors.New("significant regression")

// ErrEnvironment is returned by compare --strict-env when the two runs
// were measured on different machines or scenarios; main exits with
// status 3 for it (before ErrRegression's 1, as such a comparison is not
// to be trusted either way).
var ErrEnvironment = errors.New("the runs' environments differ")

const usage = `meshbench compares service-mesh datapath architectures.

Usage:
  meshbench bench SCENARIO.yaml [--datapaths a,b] [--out DIR] [--retain] [--provider netns|kube|kind]
  meshbench report RESULTS.json [--out DIR]
  meshbench compare BASE.json NEW.json [--markdown FILE] [--strict-env] [--alpha A]
  meshbench gate-check RESULTS.json [RESULTS.json ...] [--splits N] [--seed S]
  meshbench down [--run ID] [--provider kube|kind]
  meshbench image --out FILE [--ref REF]
  meshbench doctor [--json] [--provider kube|kind]
  meshbench version

Run 'meshbench COMMAND --help' for a command's flags.
`

// Run runs the command line args (without the program name).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: no command", ErrUsage)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "bench":
		return runBench(ctx, rest, stdout, stderr)
	case "report":
		return runReport(ctx, rest, stdout, stderr)
	case "compare":
		return runCompare(ctx, rest, stdout, stderr)
	case "gate-check":
		return runGateCheck(ctx, rest, stdout, stderr)
	case "down":
		return runDown(ctx, rest, stdout, stderr)
	case "doctor":
		return runDoctor(ctx, rest, stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "meshbench %s (commit %s, %s)\n", version.Version, version.GetCommit(), runtime.Version())
		return nil
	case "echo", "load":
		// The workloads the harness starts inside pods.
		return workload.Main(ctx, args, stdout, stderr)
	case "forwarder":
		// The AF_XDP datapath's per-node forwarder.
		return afxdp.ForwarderMain(ctx, rest, stdout, stderr)
	case "delay-queue":
		// A delay fault's queue in a pod reached through a node agent.
		return chaos.DelayQueueMain(ctx, rest, stdout)
	case "agent":
		// The node agent of the kube provider (a DaemonSet).
		return agent.Main(ctx, rest, stdout, stderr)
	case "image":
		return runImage(ctx, rest, stdout, stderr)
	case "pause":
		// The kube provider's pods' container: it holds the pod while the
		// harness starts the pod's processes beside it through the agent.
		if len(rest) > 0 {
			return fmt.Errorf("%w: pause takes no arguments", ErrUsage)
		}
		<-ctx.Done()
		return nil
	case "proxy":
		// The builtin proxy engine, started by proxy datapaths.
		return proxy.Main(ctx, rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: unknown command %q", ErrUsage, cmd)
	}
}

// parseInterspersed parses flags that may come before or after positional
// arguments, and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %v", ErrUsage, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func newFlagSet(name string, stderr io.Writer, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: meshbench %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

type benchFlags struct {
	providerFlags
	datapaths string
	out       string
	retain    bool
	verbose   bool
	runID     string
	envoyBin  string
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f benchFlags
	fs := newFlagSet("bench", stderr, "bench SCENARIO.yaml [flags]")
	fs.StringVar(&f.datapaths, "datapaths", "", "comma-separated datapaths to compare, overriding the scenario's")
	fs.StringVar(&f.out, "out", "", "output directory (default results/<timestamp>)")
	fs.BoolVar(&f.retain, "retain", false, "keep a failed datapath's cluster for inspection (remove it with 'meshbench down'); with --provider kind, keep the kind cluster as well, which the run's clusters then share")
	fs.BoolVar(&f.verbose, "v", false, "log details to stderr")
	fs.StringVar(&f.runID, "run-id", "", "run id carried in object names (default random)")
	fs.StringVar(&f.envoyBin, "envoy-bin", "", "Envoy binary for proxy datapaths (default: envoy on PATH, else the builtin engine)")
	f.providerFlags.register(fs, true)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return fmt.Errorf("%w: bench takes exactly one scenario file", ErrUsage)
	}
	// Everything that can be checked is checked before anything is created.
	src, err := os.ReadFile(pos[0])
	if err != nil {
		return fmt.Errorf("read scenario: %w", err)
	}
	sc, err := scenarios.Parse(pos[0], src)
	if err != nil {
		return err
	}
	if f.datapaths != "" {
		if err := sc.WithDatapaths(strings.Split(f.datapaths, ",")); err != nil {
			return fmt.Errorf("--datapaths: %w", err)
		}
	}
	if f.envoyBin != "" {
		if _, err := proxy.EnvoyAvailable(f.envoyBin); err != nil {
			return fmt.Errorf("%w: --envoy-bin: %w", ErrUsage, err)
		}
	}
	if sc.Provider, err = f.providerFlags.resolve(sc.Provider); err != nil {
		return err
	}
	if sc.Provider == "kube" && f.Image == "" && f.ImageRepo == "" {
		return fmt.Errorf("%w: --provider kube needs --image (an image the cluster can pull holding a static meshbench at /meshbench: build one with 'meshbench image --out meshbench.tar', then load it into the nodes or push it) or --image-repo (a repository meshbench pushes the image it builds to)", ErrUsage)
	}
	if engines := sc.ExternalEngines(); len(engines) > 0 && (sc.Provider == "kind" || sc.Provider == "kube" && f.Image == "") {
		// The image meshbench builds (kind, --image-repo) holds meshbench
		// alone: a proxy on another engine would fail in every pod.
		return fmt.Errorf("%w: engine %s: the image meshbench builds for --provider %s holds only meshbench, not %s; run the builtin engine there (a datapath label such as sidecar/builtin, or mesh.engine: builtin), or, on kube, give --image an image of your own with %s on PATH",
			ErrUsage, strings.Join(engines, ", "), sc.Provider, strings.Join(engines, " or "), strings.Join(engines, " and "))
	}
	if sc.Provider == "kind" {
		// The kind provider packs this binary (meshbench) into the image
		// its nodes run: it must be static.
		bin, err := LeanBinary()
		if err != nil {
			return err
		}
		if err := staticbin.Check(bin); err != nil {
			return fmt.Errorf("--provider kind: %w", err)
		}
	}
	if needsKube(sc.Provider) && Kube == nil {
		return execKube(append([]string{"bench"}, args...))
	}
	if f.out == "" {
		f.out = filepath.Join("results", time.Now().Format("20060102-150405"))
	}
	logger := slog.New(slog.DiscardHandler)
	if f.verbose {
		logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	f.providerFlags.Retain = f.retain
	provider, err := f.providerFlags.provider(sc.Provider, logger)
	if err != nil {
		return err
	}
	est := sc.EstimatedDuration()
	fmt.Fprintf(stderr, "meshbench: scenario %s: %s × %d rate(s) × %d repetition(s), about %s\n",
		sc.Name, strings.Join(sc.Datapaths, ","), len(sc.Load.Rates), sc.Repetitions, est.Round(time.Second))
	prog := &progress{w: stderr}
	finished := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			fmt.Fprintln(stderr, "meshbench: interrupted: stopping the load, tearing down, writing what was measured (interrupt again to quit at once, then run 'meshbench down')")
		case <-finished:
		}
	}()
	run, runErr := harness.Run(ctx, harness.Options{
		Scenario:       sc,
		ScenarioPath:   pos[0],
		ScenarioSource: src,
		OutDir:         f.out,
		Provider:       provider,
		NewDatapath:    all.For(sc, all.Options{EnvoyBinary: f.envoyBin}),
		Retain:         f.retain,
		RunID:          f.runID,
		Logger:         logger,
		Progress:       prog.event,
	})
	close(finished)
	if run == nil {
		return runErr
	}
	resultsPath := filepath.Join(f.out, harness.ResultsFile)
	html, repErr := reports.Generate(resultsPath, f.out, reports.Options{})
	if repErr != nil {
		repErr = fmt.Errorf("report: %w", repErr)
	}
	fmt.Fprintf(stderr, "meshbench: results: %s\n", resultsPath)
	if html != "" {
		fmt.Fprintln(stdout, html)
	}
	if run.Status != results.StatusOK && runErr == nil {
		runErr = fmt.Errorf("run %s", run.Status)
	}
	return errors.Join(runErr, repErr)
}

// progress prints one line per phase change for people watching.
type progress struct {
	w io.Writer
}

func (p *progress) event(ev harness.Event) {
	left := ""
	if ev.Remaining > 0 {
		left = fmt.Sprintf("  (about %s left)", ev.Remaining.Round(time.Second))
	}
	switch ev.Phase {
	case "load":
		fmt.Fprintf(p.w, "[%d/%d] %-9s rep %d/%d  %6d req/s  for %s%s\n",
			ev.Step, ev.Steps, ev.Datapath, ev.Repetition, ev.Repetitions, ev.Rate, ev.Load, left)
	case "create", "install", "calibrate":
		fmt.Fprintf(p.w, "        %-9s rep %d/%d  %s\n", ev.Datapath, ev.Repetition, ev.Repetitions, phaseText[ev.Phase])
	case "failed":
		fmt.Fprintf(p.w, "        %-9s FAILED: %v\n", ev.Datapath, ev.Err)
	}
}

var phaseText = map[string]string{
	"create":    "creating cluster",
	"install":   "installing datapath",
	"calibrate": "calibrating the load client's floor",
}

func runReport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("report", stderr, "report RESULTS.json [--out DIR]")
	out := fs.String("out", "", "output directory (default: the results file's directory)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return fmt.Errorf("%w: report takes one results file", ErrUsage)
	}
	if *out == "" {
		*out = filepath.Dir(pos[0])
	}
	html, err := reports.Generate(pos[0], *out, reports.Options{})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, html)
	return nil
}

func runDown(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("down", stderr, "down [--run ID] [--provider kube --kubeconfig FILE --context NAME | --provider kind]")
	runID := fs.String("run", "", "remove only this run's objects (default: every run's)")
	var pf providerFlags
	pf.register(fs, false)
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	name, err := pf.resolve("")
	if err != nil {
		return err
	}
	if needsKube(name) && Kube == nil {
		return execKube(append([]string{"down"}, args...))
	}
	p, err := pf.provider(name, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	removed, err := p.Down(ctx, *runID)
	for _, r := range removed {
		fmt.Fprintf(stdout, "removed %s\n", r)
	}
	if len(removed) == 0 && err == nil {
		fmt.Fprintln(stdout, "nothing to remove")
	}
	return err
}

func runDoctor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("doctor", stderr, "doctor [--json] [--provider kube --kubeconfig FILE --context NAME | --provider kind]")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	var pf providerFlags
	pf.register(fs, false)
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	name, err := pf.resolve("")
	if err != nil {
		return err
	}
	if name == "kube" {
		if *asJSON {
			return fmt.Errorf("%w: --json is for the host's report, not --provider kube", ErrUsage)
		}
		if Kube == nil {
			return execKube(append([]string{"doctor"}, args...))
		}
		lines, err := Kube.Diagnose(ctx, pf.Kubeconfig, pf.Context)
		for _, l := range lines {
			fmt.Fprintln(stdout, l)
		}
		return err
	}
	// --provider kind (and netns): the host's report, whose providers
	// section says whether kind can run here (a Docker engine).
	rep := doctor.Check(ctx, doctor.Options{})
	if *asJSON {
		return rep.WriteJSON(stdout)
	}
	return rep.WriteText(stdout)
}

// Main runs the command line of os.Args and exits with its status: 2 for
// a usage error, 3 for differing environments, 1 for any other error.
// Both binaries, meshbench and meshbench-kube, are this.
func Main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		// A second signal gets the default behaviour (exit at once);
		// `meshbench down` removes what that leaves behind.
		stop()
	}()
	err := Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err == nil {
		return
	}
	if len(os.Args) > 1 && (os.Args[1] == "echo" || os.Args[1] == "load" || os.Args[1] == "proxy" || os.Args[1] == "forwarder" || os.Args[1] == "delay-queue") && ctx.Err() != nil {
		// A workload stopped by the harness is not an error.
		return
	}
	fmt.Fprintf(os.Stderr, "meshbench: %v\n", err)
	switch {
	case errors.Is(err, ErrUsage):
		os.Exit(2)
	case errors.Is(err, ErrEnvironment):
		os.Exit(3)
	}
	os.Exit(1)
}
