package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/harness/chaos"
	"github.com/meshbench/meshbench/harness/load"
	"github.com/meshbench/meshbench/harness/metrics"
	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed"
)

// summaryGrace is how long the harness waits for the load client's summary
// after the load should have ended, or after it was told to stop.
const summaryGrace = 15 * time.Second

// calibrationMax bounds the calibration step's measured duration.
const calibrationMax = 5 * time.Second

// loadRun is one load client process and what it reported.
type loadRun struct {
	proc    *testbed.Process
	summary *load.Summary
	err     error
	done    chan struct{}
	stderr  *datapaths.Tail
}

// startLoad starts the load client in the client pod against targets.
func (r *runner) startLoad(ctx context.Context, cluster testbed.Cluster, client *testbed.Pod, targets []netip.AddrPort, rate int, warmup, duration time.Duration) (*loadRun, error) {
	l := r.sc.Load
	ts := make([]string, len(targets))
	for i, t := range targets {
		ts[i] = t.String()
	}
	keepAlive := l.KeepAlive == nil || *l.KeepAlive
	args := append(append([]string{}, r.opts.Exec...), "load",
		"--target", strings.Join(ts, ","),
		"--rate", strconv.Itoa(rate),
		"--duration", duration.String(),
		"--warmup", warmup.String(),
		"--connections", strconv.Itoa(l.Connections),
		"--request-size", strconv.FormatInt(int64(l.RequestSize), 10),
		"--keep-alive="+strconv.FormatBool(keepAlive),
		"--timeout", time.Duration(l.Timeout).String(),
	)
	pr, pw := io.Pipe()
	lr := &loadRun{done: make(chan struct{}), stderr: &datapaths.Tail{Max: 4096}}
	proc, err := cluster.Start(ctx, client, testbed.ProcessSpec{
		Name: "load", Role: results.RoleClient, Args: args, Stdout: pw, Stderr: lr.stderr,
	})
	if err != nil {
		pw.Close()
		return nil, fmt.Errorf("start load client: %w", err)
	}
	lr.proc = proc
	go func() {
		<-proc.Done()
		pw.Close()
	}()
	go func() {
		defer close(lr.done)
		lr.summary, lr.err = load.ReadStream(pr, nil)
		// Drain whatever follows so the process never blocks on stdout.
		_, _ = io.Copy(io.Discard, pr)
	}()
	return lr, nil
}

// wait waits for the summary. When ctx ends first, it tells the client to
// stop (SIGTERM), which makes it report what it measured so far.
func (lr *loadRun) wait(ctx context.Context, expected time.Duration) (*load.Summary, error) {
	deadline := time.NewTimer(expected + summaryGrace)
	defer deadline.Stop()
	select {
	case <-lr.done:
	case <-ctx.Done():
		_ = lr.proc.Signal(syscall.SIGTERM)
		select {
		case <-lr.done:
		case <-time.After(summaryGrace):
		}
	case <-deadline.C:
		_ = lr.proc.Signal(syscall.SIGTERM)
		select {
		case <-lr.done:
		case <-time.After(summaryGrace):
		}
	}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = lr.proc.Stop(stopCtx)
	if lr.summary == nil {
		err := lr.err
		if err == nil {
			err = errors.New("no summary")
		}
		return nil, fmt.Errorf("load client: %w (exit: %v; stderr: %s)", err, lr.proc.Err(), lr.stderr.String())
	}
	return lr.summary, nil
}

// calibrate measures the load client against the echo server in its own pod
// over loopback: the floor every datapath's numbers sit on.
func (r *runner) calibrate(ctx context.Context, cluster testbed.Cluster, env *datapaths.Env) (*results.Step, error) {
	l := r.sc.Load
	dur := min(time.Duration(l.Duration), calibrationMax)
	warm := min(time.Duration(l.Warmup), time.Second)
	rate := l.Rates[0]
	port := 0
	for _, s := range env.Services {
		if s.Name == l.Service {
			port = s.Port
		}
	}
	target := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	lr, err := r.startLoad(ctx, cluster, env.Client, []netip.AddrPort{target}, rate, warm, dur)
	if err != nil {
		return nil, err
	}
	sum, err := lr.wait(ctx, warm+dur)
	if err != nil {
		return nil, err
	}
	step := sum.Step()
	step.Datapath = "calibration"
	step.Service = l.Service
	step.Repetition = 1
	step.Proof = results.Proof{Source: "load client", Counters: map[string]int64{}, Verified: true,
		Detail: "client and echo server in the same pod over loopback: no datapath involved"}
	return &step, nil
}

// measure runs one load step and builds its record. On cancellation it
// returns the partial step with Interrupted set, and ctx's error.
func (r *runner) measure(ctx context.Context, cluster testbed.Cluster, env *datapaths.Env, dp datapaths.Datapath, svc *datapaths.Service, rate, rep int) (*results.Step, error) {
	l := r.sc.Load
	warm, dur := time.Duration(l.Warmup), time.Duration(l.Duration)
	c0, err := dp.Counters(ctx)
	if err != nil {
		return nil, fmt.Errorf("read %s counters: %w", dp.Name(), err)
	}
	var tl *chaos.Timeline
	if len(r.sc.Chaos) > 0 {
		tl, err = chaos.NewTimeline(r.sc.Chaos)
		if err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
		// Faults are removed on every way out: success, error, signal.
		defer func() {
			if _, err := tl.Stop(context.WithoutCancel(ctx)); err != nil {
				r.log.Warn("chaos: recover faults", "err", err)
			}
		}()
	}
	loadStart := time.Now()
	lr, err := r.startLoad(ctx, cluster, env.Client, dp.Target(svc), rate, warm, dur)
	if err != nil {
		return nil, err
	}
	if tl != nil {
		// Fault times count from the start of the measured window.
		tl.Run(ctx, r.chaosEnv(cluster, env, dp), loadStart.Add(warm))
	}

	// At the end of warm-up, snapshot the counters the measured window is
	// compared against.
	var (
		before  *metrics.Snapshot
		c1      map[string]int64
		snapErr error
	)
	select {
	case <-time.After(warm):
	case <-lr.done:
	case <-ctx.Done():
	}
	if ctx.Err() == nil {
		c1, snapErr = dp.Counters(ctx)
		if snapErr == nil {
			before, snapErr = metrics.TakeSnapshot(ctx, pidsOf(cluster, lr.proc), cluster.Namespaces())
		}
	}
	sum, err := lr.wait(ctx, dur)
	if err != nil {
		return nil, err
	}
	step := sum.Step()
	step.Datapath = dp.Name()
	step.Service = svc.Name
	step.Repetition = rep
	if ctx.Err() != nil {
		step.Interrupted = true
	}
	var chaosErr error
	if tl != nil {
		recs, err := tl.Stop(context.WithoutCancel(ctx))
		step.Faults = chaos.Analyze(step.Windows, recs)
		if err != nil {
			chaosErr = fmt.Errorf("chaos: %w", err)
		}
	}
	if before == nil {
		step.Error = "interrupted before the measured window began"
		return &step, ctx.Err()
	}
	if snapErr != nil {
		return &step, fmt.Errorf("snapshot before load: %w", snapErr)
	}
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	c2, err := dp.Counters(mctx)
	if err != nil {
		return &step, fmt.Errorf("read %s counters: %w", dp.Name(), err)
	}
	after, err := metrics.TakeSnapshot(mctx, pidsOf(cluster, nil), cluster.Namespaces())
	if err != nil {
		return &step, fmt.Errorf("snapshot after load: %w", err)
	}

	// Proof of path: the counters must have moved during warm-up and must
	// account for the measured window's successes.
	warmDelta := diffCounters(c0, c1)
	delta := diffCounters(c1, c2)
	ok, detail := dp.Verify(delta, step.Successes)
	proofFatal := true
	if !ok && resetsCounters(r.sc.Chaos) {
		// A killed echo server or proxy restarts its counters from zero:
		// the delta no longer accounts for the window. Record that, and
		// rely on the warm-up check for the path.
		detail += " (not conclusive: a pod-kill or proxy-kill in the timeline restarted counted processes)"
		proofFatal = false
	}
	step.Proof = results.Proof{Source: dp.ProofSource(), Counters: delta, Verified: ok, Detail: detail}
	if mr, isMR := dp.(datapaths.MetricsReporter); isMR {
		step.DatapathMetrics = mr.DatapathMetrics()
	}
	fillCost(&step, cluster, lr.proc, sum, metrics.Diff(before, after))

	switch {
	case step.Interrupted:
		return &step, ctx.Err()
	case chaosErr != nil:
		return &step, chaosErr
	case step.Successes == 0 && len(r.sc.Chaos) == 0:
		return &step, fmt.Errorf("no successful requests (errors: %v)", step.Errors)
	case warm > 0 && allZero(warmDelta):
		return &step, fmt.Errorf("datapath %s counters did not move during warm-up: it is not carrying the traffic", dp.Name())
	case !ok && proofFatal:
		return &step, fmt.Errorf("proof of path failed: %s", detail)
	}
	return &step, nil
}

// pidsOf returns the pids of the cluster's running processes, without skip.
func pidsOf(cluster testbed.Cluster, skip *testbed.Process) []int {
	var pids []int
	for _, p := range cluster.Processes() {
		if p != skip && !p.Exited() {
			pids = append(pids, p.PID)
		}
	}
	return pids
}

func diffCounters(a, b map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(b))
	for k, v := range b {
		out[k] = v - a[k]
	}
	return out
}

func allZero(m map[string]int64) bool {
	for _, v := range m {
		if v != 0 {
			return false
		}
	}
	return true
}
