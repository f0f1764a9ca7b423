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

// read reads dp's counters, then the client pod's TCP counters.
func (r *runner) read(ctx context.Context, dp datapaths.Datapath, client *testbed.Pod) (reading, error) {
	rd := reading{start: time.Now()}
	var err error
	if rd.counters, err = dp.Counters(ctx); err != nil {
		return rd, fmt.Errorf("read %s counters: %w", dp.Name(), err)
	}
	snap, err := r.opts.Snapshot(ctx, nil, []string{client.NetnsPath})
	if err != nil {
		return rd, fmt.Errorf("read client pod TCP counters: %w", err)
	}
	rd.tcp = snap.TCP[client.NetnsPath]
	rd.end = time.Now()
	return rd, nil
}

// measure runs one load step and builds its record. On cancellation it
// returns the partial step with Interrupted set, and ctx's error.
func (r *runner) measure(ctx context.Context, cluster testbed.Cluster, env *datapaths.Env, dp datapaths.Datapath, svc *datapaths.Service, rate, rep int, plan stepPlan) (*results.Step, error) {
	r0, err := r.read(ctx, dp, env.Client)
	if err != nil {
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
	lr, err := r.startLoad(ctx, cluster, env.Client, dp.Target(svc), rate, plan.warm, plan.dur)
	if err != nil {
		return nil, err
	}
	if tl != nil {
		// Fault times count from the start of the measured window.
		tl.Run(ctx, r.chaosEnv(cluster, env, dp), loadStart.Add(plan.warm))
	}

	// When the client marks the start of the measured window, read the
	// counters the window is compared against, then snapshot every
	// process and namespace for the step's cost.
	var (
		before  *metrics.Snapshot
		r1      reading
		snapErr error
	)
	select {
	case <-lr.mark:
	case <-time.After(plan.warm + markGrace):
		r.log.Warn("load client did not mark the measured window; reading counters anyway")
	case <-lr.done:
	case <-ctx.Done():
	}
	if ctx.Err() == nil {
		r1, snapErr = r.read(ctx, dp, env.Client)
		if snapErr == nil {
			before, snapErr = r.opts.Snapshot(ctx, pidsOf(cluster, lr.proc), cluster.Namespaces())
		}
	}
	sum, err := lr.wait(ctx, plan.dur)
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
	r2, err := r.read(mctx, dp, env.Client)
	if err != nil {
		return &step, err
	}
	after, err := r.opts.Snapshot(mctx, pidsOf(cluster, nil), cluster.Namespaces())
	if err != nil {
		return &step, fmt.Errorf("snapshot after load: %w", err)
	}

	// Proof of path: the counters of each window held to what the client
	// did in it. Faults start with the measured window, so the warm-up's
	// proof always holds; a fault that restarts counted processes makes
	// the measured window's proof inconclusive rather than failed.
	slack, why := edgeSlack(sum, r1, rate)
	w := work(sum.Work, sum.Errors, r2.tcp.Sub(r1.tcp), slack, why, svc.Mesh.Protocol)
	step.Proof = datapaths.Prove(dp.ProofSource(), dp.Verify, diffCounters(r1.counters, r2.counters), w)
	if plan.warm > 0 && !sum.Mark.IsZero() {
		ww := work(sum.WarmupWork, sum.WarmupWork.Errors, r1.tcp.Sub(r0.tcp), slack, why, svc.Mesh.Protocol)
		wp := datapaths.Prove(dp.ProofSource(), dp.Verify, diffCounters(r0.counters, r1.counters), ww)
		step.Proof.Warmup = &wp
	}
	if !step.Proof.Verified && plan.chaos && resetsCounters(r.sc.Chaos) {
		step.Proof.Inconclusive = true
		step.Proof.Detail += " (not conclusive: a pod-kill or proxy-kill in the timeline restarted counted processes; the warm-up's proof stands for the path)"
	}
	if mr, isMR := dp.(datapaths.MetricsReporter); isMR {
		step.DatapathMetrics = mr.DatapathMetrics()
	}
	fillCost(&step, cluster, lr.proc, sum, metrics.Diff(before, after))

	switch {
	case step.Interrupted:
		return &step, ctx.Err()
	case chaosErr != nil:
		return &step, chaosErr
	case step.Successes == 0 && !plan.chaos:
		return &step, fmt.Errorf("no successful requests (errors: %v)", step.Errors)
	case step.Proof.Warmup != nil && !step.Proof.Warmup.Verified:
		return &step, fmt.Errorf("proof of path failed during the warm-up: %s", step.Proof.Warmup.Detail)
	case !step.Proof.Verified && !step.Proof.Inconclusive:
		return &step, fmt.Errorf("proof of path failed: %s", step.Proof.Detail)
	}
	return &step, nil
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
