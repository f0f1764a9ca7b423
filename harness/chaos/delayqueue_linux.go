package chaos

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed"
)

// DelayQueueMain is `meshbench delay-queue`: the nfqueue delay of a pod
// reached through a node agent, run in the pod's network namespace (the
// agent starts it there), since the queue must be read from inside it. It
// prints READY once the queue is bound, "HELD n" whenever the count of
// held packets changes (at most every 100 ms), and, when ctx ends (SIGTERM),
// releases what it holds, prints the final count and returns.
func DelayQueueMain(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("delay-queue", flag.ContinueOnError)
	num := fs.Uint("queue", 0, "NFQUEUE number to bind (required)")
	latency := fs.Duration("latency", 0, "delay of each packet (required)")
	jitter := fs.Duration("jitter", 0, "uniform jitter around the latency")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *num == 0 || *num > 65535 || *latency <= 0 || *jitter < 0 || *jitter > *latency || fs.NArg() > 0 {
		return errors.New("delay-queue: want --queue 1..65535, --latency > 0 and 0 <= --jitter <= --latency")
	}
	var n atomic.Int64
	q, err := openQueue(uint16(*num), *latency, *jitter, &n)
	if err != nil {
		return fmt.Errorf("delay-queue: %w", err)
	}
	fmt.Fprintln(stdout, "READY")
	last := int64(-1)
	report := func() {
		if v := n.Load(); v != last {
			last = v
			fmt.Fprintf(stdout, "HELD %d\n", v)
		}
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			report()
		case <-ctx.Done():
			err := q.close()
			report()
			if errors.Is(err, context.Canceled) {
				err = nil
			}
			return err
		}
	}
}

// remoteQueue is a delay-queue process in a pod reached through an agent.
type remoteQueue struct {
	proc *testbed.Process
	out  *queueOutput
}

// queueOutput reads a delay-queue's output: whether it is ready, and the
// last count of held packets it reported.
type queueOutput struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	ready chan struct{}
	once  sync.Once
	held  int64
	tail  string // the last lines, for errors
}

func newQueueOutput() *queueOutput { return &queueOutput{ready: make(chan struct{})} }

func (o *queueOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Write(p)
	for {
		line, err := o.buf.ReadString('\n')
		if err != nil {
			o.buf.Reset()
			o.buf.WriteString(line) // incomplete: keep for the next write
			return len(p), nil
		}
		line = strings.TrimSpace(line)
		o.tail = line
		switch {
		case line == "READY":
			o.once.Do(func() { close(o.ready) })
		case strings.HasPrefix(line, "HELD "):
			if v, err := strconv.ParseInt(strings.TrimPrefix(line, "HELD "), 10, 64); err == nil {
				o.held = v
			}
		}
	}
}

func (o *queueOutput) heldCount() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.held
}

func (o *queueOutput) last() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.tail
}

// startRemote starts the delay-queue of queue num in pod, through the
// cluster (the pod's node agent), and waits until it has bound the queue.
func (f *nfqDelay) startRemote(ctx context.Context, pod *testbed.Pod, num uint16) (*remoteQueue, error) {
	if f.env == nil || f.env.Cluster == nil || len(f.env.Exec) == 0 {
		return nil, fmt.Errorf("delay (nfqueue) on pod %s through its node agent: no cluster or command to start the queue with", pod.Name)
	}
	out := newQueueOutput()
	var errb bytes.Buffer
	var errMu sync.Mutex
	stderr := writerFunc(func(p []byte) (int, error) { errMu.Lock(); defer errMu.Unlock(); return errb.Write(p) })
	args := append(append([]string{}, f.env.Exec...), "delay-queue", "--queue", strconv.Itoa(int(num)),
		"--latency", f.latency.String(), "--jitter", f.jitter.String())
	proc, err := f.env.Cluster.Start(ctx, pod, testbed.ProcessSpec{Name: "delay-queue", Role: results.RoleChaos, Args: args, Stdout: out, Stderr: stderr})
	if err != nil {
		return nil, fmt.Errorf("delay (nfqueue) on pod %s: start its queue: %w", pod.Name, err)
	}
	select {
	case <-out.ready:
		return &remoteQueue{proc: proc, out: out}, nil
	case <-proc.Done():
	case <-time.After(10 * time.Second):
		proc.Stop(context.WithoutCancel(ctx))
	case <-ctx.Done():
		proc.Stop(context.WithoutCancel(ctx))
	}
	errMu.Lock()
	defer errMu.Unlock()
	return nil, fmt.Errorf("delay (nfqueue) on pod %s: its queue did not bind (%v): %s", pod.Name, proc.Err(), strings.TrimSpace(errb.String()))
}

// stop ends the delay-queue (SIGTERM: it releases what it holds) and
// returns the count of packets it held.
func (q *remoteQueue) stop(ctx context.Context) (int64, error) {
	if err := q.proc.Signal(syscall.SIGTERM); err != nil && !q.proc.Exited() {
		return q.out.heldCount(), errors.Join(err, q.proc.Stop(ctx))
	}
	select {
	case <-q.proc.Done():
	case <-time.After(5 * time.Second):
		q.proc.Stop(ctx)
		return q.out.heldCount(), fmt.Errorf("delay-queue in %s did not end 5s after SIGTERM (last: %q)", q.proc.Pod, q.out.last())
	}
	return q.out.heldCount(), nil
}

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(p []byte) (int, error) { return w(p) }
