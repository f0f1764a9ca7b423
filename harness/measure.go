package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/harness/chaos"
	"github.com/meshbench/meshbench/harness/metrics"
	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/stream"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/harness/workload"
)

// summaryGrace is how long the harness waits for the load client's summary
// after the load should have ended, or after it was told to stop.
const summaryGrace = 15 * time.Second

// calibrationMax bounds the calibration step's measured duration.
const calibrationMax = 5 * time.Second

// loadRun is one load client process and what it reported.
type loadRun struct {
	proc    *testbed.Process
	summary *stream.Summary
	err     error
	done    chan struct{}
	// mark receives the time the measured window began, by the client's
	// clock, the moment the client reports it.
	mark   chan time.Time
	stderr *datapaths.Tail
}

// startLoad starts the load client in the client pod against targets.
func (r *runner) startLoad(ctx context.Context, cluster testbed.Cluster, client *testbed.Pod, targets []netip.AddrPort, rate int, plan stepPlan) (*loadRun, error) {
	l := r.sc.Load
	ts := make([]string, len(targets))
	for i, t := range targets {
		ts[i] = t.String()
	}
	keepAlive := l.KeepAlive == nil || *l.KeepAlive
	args := append(append([]string{}, r.opts.Exec...), "load",
		"--target", strings.Join(ts, ","),
		"--rate", strconv.Itoa(rate),
		"--duration", plan.dur.String(),
		"--warmup", plan.warm.String(),
		"--window", plan.windowWidth().String(),
		"--connections", strconv.Itoa(l.Connections),
		"--request-size", strconv.FormatInt(int64(l.RequestSize), 10),
		"--keep-alive="+strconv.FormatBool(keepAlive),
		"--timeout", time.Duration(l.Timeout).String(),
		"--pacer-spin", time.Duration(l.PacerSpin).String(),
		"--kernel-stamps="+strconv.FormatBool(l.KernelTimestamps == nil || *l.KernelTimestamps),
	)
	pr, pw := io.Pipe()
	lr := &loadRun{done: make(chan struct{}), mark: make(chan time.Time, 1), stderr: &datapaths.Tail{Max: 4096}}
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
		lr.summary, lr.err = stream.ReadStreamWith(pr, stream.Handlers{Mark: func(m stream.Mark) {
			select {
			case lr.mark <- m.Time:
			default:
			}
		}})
		// Drain whatever follows so the process never blocks on stdout.
		_, _ = io.Copy(io.Discard, pr)
	}()
	return lr, nil
}

// wait waits for the summary. When ctx ends first, it tells the client to
// stop (SIGTERM), which makes it report what it measured so far.
func (lr *loadRun) wait(ctx context.Context, expected time.Duration) (*stream.Summary, error) {
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

// markGrace is how long after the end of the warm-up the harness waits for
// the load client's mark before reading the counters anyway.
const markGrace = 5 * time.Second

// calibrate measures the load client against the echo server in its own pod
// over loopback: the floor every datapath's numbers sit on. Its proof is
// that echo server's own counter.
func (r *runner) calibrate(ctx context.Context, cluster testbed.Cluster, env *datapaths.Env) (*results.Step, error) {
	l := r.sc.Load
	port := 0
	for _, s := range env.Services {
		if s.Name == l.Service {
			port = s.Port
		}
	}
	cal := &calibration{pod: env.Client, port: port, stats: r.opts.ReadEchoStats}
	svc := &datapaths.Service{Name: l.Service, Port: port, Mesh: env.Load.Mesh}
	plan := stepPlan{
		warm: min(time.Duration(l.Warmup), time.Second),
		dur:  min(time.Duration(l.Duration), calibrationMax),
	}
	return r.measure(ctx, cluster, env, cal, svc, l.Rates[0], 1, plan)
}

// stepPlan is how one step is measured: its warm-up and measured
// durations, and whether the scenario's chaos timeline runs in it.
type stepPlan struct {
	warm, dur time.Duration
	chaos     bool
}

// ChaosWindow is the width of the time windows of steps with a chaos
// timeline: fine enough that detection and recovery times are exact to a
// tenth of a second. Other steps use the client's default (1 s).
const ChaosWindow = 100 * time.Millisecond

// windowWidth is the width of the step's time windows.
func (p stepPlan) windowWidth() time.Duration {
	if p.chaos {
		return ChaosWindow
	}
	return workload.DefaultWindow
}

// plan returns the plan of a datapath step of the scenario.
func (r *runner) plan() stepPlan {
	return stepPlan{warm: time.Duration(r.sc.Load.Warmup), dur: time.Duration(r.sc.Load.Duration), chaos: len(r.sc.Chaos) > 0}
}

// reading is one read of the datapath's counters and the client pod's TCP
// counters, with when it began and ended.
type reading struct {
	counters   map[string]int64
	tcp        metrics.TCP
	start, end time.Time
}

// readBudget bounds the read after a step (every proxy's counters, then
// every process and namespace) for a cluster of pods pods: 10 s, and 20 ms
// more per pod (a 512-pod cluster: 20 s).
func readBudget(pods int) time.Duration {
	return 10*time.Second + time.Duration(pods)*20*time.Millisecond
}

// snapshotFunc reads processes and network namespaces (Options.Snapshot).
type snapshotFunc func(ctx context.Context, pids []int, netns []string) (*metrics.Snapshot, error)

// snapshotter is a cluster that reads its own processes and namespaces:
// one whose nodes are reached through agents, where pids and namespace
// paths are the nodes', not this host's.
type snapshotter interface {
	Snapshot(ctx context.Context, pids []int, netns []string) (*metrics.Snapshot, error)
}

// snapshotFor returns how to read cluster's processes and namespaces:
// through the cluster when it can, else Options.Snapshot.
func (r *runner) snapshotFor(cluster testbed.Cluster) snapshotFunc {
	if s, ok := cluster.(snapshotter); ok {
		return s.Snapshot
	}
	return r.opts.Snapshot
}

// read reads dp's counters, then the client pod's TCP counters.
func (r *runner) read(ctx context.Context, snapshot snapshotFunc, dp datapaths.Datapath, client *testbed.Pod) (reading, error) {
	rd := reading{start: time.Now()}
	var err error
	if rd.counters, err = dp.Counters(ctx); err != nil {
		return rd, fmt.Errorf("read %s counters: %w", dp.Name(), err)
	}
	snap, err := snapshot(ctx, nil, []string{client.NetnsPath})
	if err != nil {
		return rd, fmt.Errorf("read client pod TCP counters: %w", err)
	}
	rd.tcp = snap.TCP[client.NetnsPath]
	rd.end = time.Now()
	return rd, nil
}

// measure runs one load step and builds its record: it runs the window,
// then judges the step. On cancellation it returns the partial step with
// Interrupted set, and ctx's error.
func (r *runner) measure(ctx context.Context, cluster testbed.Cluster, env *datapaths.Env, dp datapaths.Datapath, svc *datapaths.Service, rate, rep int, plan stepPlan) (*results.Step, error) {
	w, err := r.runWindow(ctx, cluster, env, dp, svc, rate, plan)
	if w == nil {
		return nil, err
	}
	step := w.sum.Step()
	step.Datapath = dp.Name()
	step.Service = svc.Name
	step.Repetition = rep
	step.Faults = w.faults
	step.WindowS = plan.windowWidth().Seconds()
	if ctx.Err() != nil {
		step.Interrupted = true
	}
	if err != nil {
		if w.before == nil && ctx.Err() != nil {
			step.Error = "interrupted before the measured window began"
		}
		return &step, err
	}
	r.judge(&step, w, cluster, dp, svc, rate, plan)
	switch {
	case step.Interrupted:
		return &step, ctx.Err()
	case w.chaosErr != nil:
		return &step, w.chaosErr
	case step.Successes == 0 && !plan.chaos:
		return &step, fmt.Errorf("no successful requests (errors: %v)", step.Errors)
	case step.Proof.Warmup != nil && !step.Proof.Warmup.Verified:
		return &step, fmt.Errorf("proof of path failed during the warm-up: %s", step.Proof.Warmup.Detail)
	case !step.Proof.Verified && !step.Proof.Inconclusive:
		return &step, fmt.Errorf("proof of path failed: %s", step.Proof.Detail)
	}
	return &step, nil
}

// window is what a step's load window measured: the client's summary, the
// datapath's counters and the client pod's TCP counters before the load
// (r0), at the start of the measured window (r1) and at its end (r2), the
// processes and namespaces at the start and end of the measured window,
// and the chaos timeline's faults.
type window struct {
	sum           *stream.Summary
	client        *testbed.Process
	r0, r1, r2    reading
	before, after *metrics.Snapshot
	faults        []results.FaultRecord
	chaosErr      error
}

// runWindow runs the load (and the chaos timeline) for one step and reads
// everything the step is judged on. It returns a nil window when nothing
// was measured; with an error, the window holds what was.
func (r *runner) runWindow(ctx context.Context, cluster testbed.Cluster, env *datapaths.Env, dp datapaths.Datapath, svc *datapaths.Service, rate int, plan stepPlan) (*window, error) {
	w := &window{}
	snapshot := r.snapshotFor(cluster)
	var err error
	if w.r0, err = r.read(ctx, snapshot, dp, env.Client); err != nil {
		return nil, err
	}
	var tl *chaos.Timeline
	if plan.chaos {
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
	lr, err := r.startLoad(ctx, cluster, env.Client, dp.Target(svc), rate, plan)
	if err != nil {
		return nil, err
	}
	w.client = lr.proc
	if tl != nil {
		// Fault times count from the start of the measured window.
		tl.Run(ctx, r.chaosEnv(cluster, env, dp), loadStart.Add(plan.warm))
	}

	// When the client marks the start of the measured window, read the
	// counters the window is compared against, then snapshot every
	// process and namespace for the step's cost.
	var snapErr error
	select {
	case <-lr.mark:
	case <-time.After(plan.warm + markGrace):
		r.log.Warn("load client did not mark the measured window; reading counters anyway")
	case <-lr.done:
	case <-ctx.Done():
	}
	if ctx.Err() == nil {
		w.r1, snapErr = r.read(ctx, snapshot, dp, env.Client)
		if snapErr == nil {
			w.before, snapErr = snapshot(ctx, pidsOf(cluster, lr.proc), cluster.Namespaces())
		}
	}
	if w.sum, err = lr.wait(ctx, plan.dur); err != nil {
		return nil, err
	}
	if tl != nil {
		recs, err := tl.Stop(context.WithoutCancel(ctx))
		w.faults = chaos.Analyze(w.sum.Windows, recs)
		if err != nil {
			w.chaosErr = fmt.Errorf("chaos: %w", err)
		}
	}
	switch {
	case w.before == nil && snapErr == nil:
		return w, ctx.Err()
	case snapErr != nil:
		return w, fmt.Errorf("snapshot before load: %w", snapErr)
	}
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readBudget(len(cluster.Pods())))
	defer cancel()
	if w.r2, err = r.read(mctx, snapshot, dp, env.Client); err != nil {
		return w, err
	}
	if w.after, err = snapshot(mctx, pidsOf(cluster, nil), cluster.Namespaces()); err != nil {
		return w, fmt.Errorf("snapshot after load: %w", err)
	}
	return w, nil
}

// judge fills in step's proof of path, the datapath's metrics and the
// step's cost from what the window measured.
//
// Proof of path: the counters of each window held to what the client did
// in it. Faults start with the measured window, so the warm-up's proof
// always holds; a fault that restarts counted processes makes the measured
// window's proof inconclusive rather than failed.
func (r *runner) judge(step *results.Step, w *window, cluster testbed.Cluster, dp datapaths.Datapath, svc *datapaths.Service, rate int, plan stepPlan) {
	sum := w.sum
	slack, why := edgeSlack(sum, w.r1, rate)
	mw := work(sum.Work, sum.Errors, w.r2.tcp.Sub(w.r1.tcp), slack, why, svc.Mesh.Protocol)
	step.Proof = datapaths.Prove(dp.ProofSource(), dp.Verify, diffCounters(w.r1.counters, w.r2.counters), mw)
	if plan.warm > 0 && !sum.Mark.IsZero() {
		ww := work(sum.WarmupWork, sum.WarmupWork.Errors, w.r1.tcp.Sub(w.r0.tcp), slack, why, svc.Mesh.Protocol)
		wp := datapaths.Prove(dp.ProofSource(), dp.Verify, diffCounters(w.r0.counters, w.r1.counters), ww)
		step.Proof.Warmup = &wp
	}
	if !step.Proof.Verified && plan.chaos && resetsCounters(r.sc.Chaos) {
		step.Proof.Inconclusive = true
		step.Proof.Detail += " (not conclusive: a pod-kill or proxy-kill in the timeline restarted counted processes; the warm-up's proof stands for the path)"
	}
	if mr, isMR := dp.(datapaths.MetricsReporter); isMR {
		step.DatapathMetrics = mr.DatapathMetrics()
	}
	if nr, ok := dp.(datapaths.EngineNotesReporter); ok {
		step.EngineNotes = nr.EngineNotes()
	}
	if fr, ok := dp.(datapaths.FootprintReporter); ok {
		if fp := fr.Footprint(); fp != (results.Footprint{}) {
			step.Footprint = &fp
		}
	}
	fillCost(step, cluster, w.client, sum, metrics.Diff(w.before, w.after))
}

// edgeSlack is how many requests may land on the other side of the
// measured window's start in the counters read at rd: warm-up requests
// that completed after the client's mark (stragglers), and requests sent
// between the mark and the end of the read (or between the start of the
// read and the mark, when the harness read before it), at rate, plus one.
func edgeSlack(sum *stream.Summary, rd reading, rate int) (int64, string) {
	if sum.Mark.IsZero() {
		return 0, "no measured window"
	}
	skew := max(rd.end.Sub(sum.Mark), sum.Mark.Sub(rd.start), 0)
	sent := int64(math.Ceil(skew.Seconds() * float64(rate)))
	return sum.Stragglers + sent + 1, fmt.Sprintf("%d warm-up requests completed after the window began, %d sent during the %.1f ms the counters took to read at %d req/s, +1",
		sum.Stragglers, sent, float64(skew.Microseconds())/1e3, rate)
}

// work turns what the client counted in a window into a datapaths.Work.
func work(lw stream.Work, errs map[string]int64, tcp metrics.TCP, slack int64, why, protocol string) datapaths.Work {
	w := datapaths.Work{
		Successes: lw.Successes,
		BytesSent: lw.BytesSent, BytesReceived: lw.BytesReceived, ConnsOpened: lw.ConnectionsOpened,
		ClientOutSegs: tcp.OutSegs, ClientInSegs: tcp.InSegs,
		Slack: slack, SlackWhy: why, Protocol: protocol,
	}
	for class, n := range errs {
		switch class {
		case stream.ErrorHTTP4xx, stream.ErrorHTTP5xx:
			w.HTTPErrors += n
		case stream.ErrorTimeout:
			w.Timeouts += n
		default:
			w.TransportErrors += n
		}
	}
	return w
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
