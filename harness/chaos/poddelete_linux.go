package chaos

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/meshbench/meshbench/harness/chaos/impl"
	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/scenarios"
)

// podDelete is pod-kill on a cluster whose controller replaces deleted
// pods (Kubernetes): it deletes every selected pod at once, as Chaos
// Mesh's pod-kill does, and follows the replacement the Deployment
// creates: as soon as it runs, the datapath's per-pod part and then the
// workload start in it, and the cluster's own readiness (the kubelet's
// probe, through EndpointSlices) puts it back into its services. The
// recovery measured is the cluster's: delete, reschedule, sandbox and
// network, start, probe, endpoints, push. The fault's duration does not
// hold the replacement back; Recover waits until it serves.
type podDelete struct {
	env *Env
	rep testbed.PodReplacer

	mu      sync.Mutex
	deleted []deletion
	probers []*prober
}

// deletion is one deleted pod and what became of it.
type deletion struct {
	pod       *testbed.Pod
	name      string // the deleted pod's name in the cluster
	procs     []*testbed.Process
	deletedAt time.Time
	done      chan struct{}
	// Set before done closes:
	replacement string
	runningAt   time.Time // the replacement ran and was resolved
	servingAt   time.Time // the datapath's part and the workload started
	err         error
}

func (f *podDelete) Kind() string           { return scenarios.FaultPodKill }
func (f *podDelete) Implementation() string { return impl.PodDelete }

func (f *podDelete) Inject(ctx context.Context, t Target) error {
	if f.env.StartWorkload == nil {
		return errors.New("pod-kill needs Env.StartWorkload to start the workload in the replacement")
	}
	var errs []error
	for _, p := range t.Pods {
		var procs []*testbed.Process
		for _, pr := range f.env.Cluster.Processes() {
			if pr.Pod == p.Name && !pr.Exited() {
				procs = append(procs, pr)
			}
		}
		if f.env.PodDeleted != nil {
			if err := f.env.PodDeleted(ctx, p); err != nil {
				errs = append(errs, fmt.Errorf("before deleting pod %s: %w", p.Name, err))
				continue
			}
		}
		d := &deletion{pod: p, procs: procs, deletedAt: time.Now(), done: make(chan struct{})}
		name, err := f.rep.DeletePod(ctx, p)
		d.name = name
		if err != nil && name == "" {
			errs = append(errs, err)
			continue
		}
		if err != nil {
			errs = append(errs, err) // deleted, but its processes were slow to go
		}
		f.mu.Lock()
		if f.env.Probe != nil {
			f.probers = append(f.probers, startProber(ctx, f.env, p, d.deletedAt))
		} else {
			f.probers = append(f.probers, nil)
		}
		f.deleted = append(f.deleted, *d)
		i := len(f.deleted) - 1
		f.mu.Unlock()
		go f.follow(context.WithoutCancel(ctx), i)
	}
	return errors.Join(errs...)
}

// follow waits for deletion i's replacement, sets the datapath and the
// workload up in it, and tells the probe the workload serves.
func (f *podDelete) follow(ctx context.Context, i int) {
	f.mu.Lock()
	d, pr := f.deleted[i], f.probers[i]
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, RecoverTimeout)
	defer cancel()
	repl, runningAt, servingAt, err := f.replace(ctx, d.pod)
	f.mu.Lock()
	f.deleted[i].replacement, f.deleted[i].runningAt, f.deleted[i].servingAt, f.deleted[i].err = repl, runningAt, servingAt, err
	f.mu.Unlock()
	if err == nil && pr != nil {
		pr.workloadRestarted()
	}
	close(d.done)
}

func (f *podDelete) replace(ctx context.Context, pod *testbed.Pod) (repl string, runningAt, servingAt time.Time, err error) {
	if repl, err = f.rep.AwaitReplacement(ctx, pod); err != nil {
		return repl, runningAt, servingAt, err
	}
	runningAt = time.Now()
	if f.env.PodReplaced != nil {
		if err := f.env.PodReplaced(ctx, pod); err != nil {
			return repl, runningAt, servingAt, err
		}
	}
	if err := f.env.StartWorkload(ctx, pod); err != nil {
		return repl, runningAt, servingAt, fmt.Errorf("start workload of pod %s in its replacement %s: %w", pod.Name, repl, err)
	}
	return repl, runningAt, time.Now(), nil
}

// Activity reports the deleted pods, whether their processes went with
// them, and when each replacement ran and served.
func (f *podDelete) Activity(context.Context) (results.FaultActivity, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := results.FaultActivity{Counters: map[string]int64{"deleted_pods": int64(len(f.deleted))}}
	down := true
	var parts []string
	for _, d := range f.deleted {
		for _, p := range d.procs {
			a.KilledPIDs = append(a.KilledPIDs, p.PID)
			if !p.Exited() {
				down = false
			}
		}
		a.Counters["killed"] += int64(len(d.procs))
		s := fmt.Sprintf("deleted pod %s (%s) and its %d processes", d.pod.Name, d.name, len(d.procs))
		select {
		case <-d.done:
			if d.err != nil {
				s += fmt.Sprintf("; replacement failed: %v", d.err)
			} else {
				s += fmt.Sprintf("; replacement %s ran %.2f s later, served %.2f s later", d.replacement, d.runningAt.Sub(d.deletedAt).Seconds(), d.servingAt.Sub(d.deletedAt).Seconds())
				a.Counters["replacement_running_ms"] = max(a.Counters["replacement_running_ms"], d.runningAt.Sub(d.deletedAt).Milliseconds())
				a.Counters["replacement_serving_ms"] = max(a.Counters["replacement_serving_ms"], d.servingAt.Sub(d.deletedAt).Milliseconds())
			}
		default:
			s += "; replacement not serving yet"
		}
		parts = append(parts, s)
	}
	a.StayedDown = &down
	a.Active = len(f.deleted) > 0 && down
	if len(parts) == 0 {
		a.Detail = "deleted no pod"
	} else {
		a.Detail = strings.Join(parts, "; ")
	}
	return a, nil
}

// Recover waits until every replacement serves (the workload started in
// it), bounded by ctx.
func (f *podDelete) Recover(ctx context.Context, t Target) error {
	f.mu.Lock()
	deleted := append([]deletion(nil), f.deleted...)
	f.mu.Unlock()
	var errs []error
	for _, d := range deleted {
		select {
		case <-d.done:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("replacement of pod %s: %w", d.pod.Name, ctx.Err()))
			continue
		}
	}
	f.mu.Lock()
	for _, d := range f.deleted {
		if d.err != nil {
			errs = append(errs, d.err)
		}
	}
	f.mu.Unlock()
	return errors.Join(errs...)
}

// settle waits until the cluster has put the replacements back into
// their services' endpoints, as podKill's does.
func (f *podDelete) settle(stop <-chan struct{}, rec *results.FaultRecord) error {
	f.mu.Lock()
	probers := f.probers
	f.probers = nil
	f.mu.Unlock()
	return settleProbers(probers, stop, rec)
}
