package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/scenarios"
)

// prober is a readiness probe on one killed pod, as a kubelet runs it: it
// probes every period, takes the pod out of its services' endpoints after
// FailureThreshold failures in a row and puts it back after
// SuccessThreshold successes in a row. It runs from the kill until the pod
// is ready again, or until it is stopped.
//
// A kubelet's probes run on their own clock, so a crash falls at a random
// point of the period: the first probe comes a uniformly random share of
// the period after the kill.
type prober struct {
	pod      *testbed.Pod
	spec     scenarios.Probe
	probe    func(ctx context.Context, pod *testbed.Pod) error
	setReady func(ctx context.Context, pod *testbed.Pod, ready bool) error

	// source says who decided readiness, for the record: "" for this
	// prober, else the cluster's (testbed.ReadinessWatcher).
	source string

	killedAt  time.Time
	restarted chan struct{} // closed once the workload serves again
	stop      chan struct{} // closed to end the probe early
	done      chan struct{}

	mu          sync.Mutex
	restartedAt time.Time
	notReadyAt  time.Time // zero: never taken out
	readyAt     time.Time // zero: not put back (yet)
	errs        []error
}

// startProber starts probing pod, killed at killedAt.
func startProber(ctx context.Context, env *Env, pod *testbed.Pod, killedAt time.Time) *prober {
	p := &prober{
		pod: pod, spec: env.readiness(pod), probe: env.Probe, setReady: env.SetReady,
		killedAt: killedAt, restarted: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{}),
	}
	if rw, ok := env.Cluster.(testbed.ReadinessWatcher); ok {
		var mu sync.Mutex
		var states []bool
		notify := make(chan struct{}, 1)
		stop, watched, err := rw.WatchReady(ctx, pod, func(ready bool) {
			mu.Lock()
			states = append(states, ready)
			mu.Unlock()
			select {
			case notify <- struct{}{}:
			default:
			}
		})
		switch {
		case err != nil:
			// Fall back to probing here, and say why.
			p.errs = append(p.errs, fmt.Errorf("follow the cluster's readiness of %s (probing it here instead): %w", pod.Name, err))
		case watched:
			p.source = rw.ReadinessSource()
			next := func() []bool {
				mu.Lock()
				defer mu.Unlock()
				out := states
				states = nil
				return out
			}
			go p.follow(context.WithoutCancel(ctx), notify, next, stop)
			return p
		}
	}
	period := time.Duration(p.spec.Period)
	go p.run(context.WithoutCancel(ctx), killedAt.Add(rand.N(period)))
	return p
}

// follow is run for a cluster that decides readiness itself: it follows
// the cluster's view of the pod (next returns the states seen since the
// last call, each time notify fires) and marks the pod as the cluster
// does, until the restarted workload is ready again. A workload restarted
// before the cluster noticed is given the probe's failure time and a
// second more to be noticed.
func (p *prober) follow(ctx context.Context, notify <-chan struct{}, next func() []bool, stop func()) {
	defer close(p.done)
	defer stop()
	ready := true
	restarted := p.restarted
	var grace <-chan time.Time
	for {
		select {
		case <-notify:
			for _, r := range next() {
				switch {
				case ready && !r:
					ready = false
					p.mark(ctx, false, time.Now())
				case !ready && r:
					ready = true
					if p.isRestarted() {
						p.mark(ctx, true, time.Now())
						return
					}
					p.mark(ctx, true, time.Time{})
				}
			}
		case <-restarted:
			restarted = nil
			if ready {
				period := max(time.Duration(p.spec.Period), time.Second)
				grace = time.After(period*time.Duration(max(p.spec.FailureThreshold, 1)) + time.Second)
			}
		case <-grace:
			if ready {
				return // back before the cluster noticed
			}
		case <-p.stop:
			if !ready {
				p.mark(ctx, true, time.Time{})
			}
			return
		}
	}
}

func (p *prober) run(ctx context.Context, next time.Time) {
	defer close(p.done)
	period, timeout := time.Duration(p.spec.Period), time.Duration(p.spec.Timeout)
	ready, fails, successes := true, 0, 0
	for {
		t := time.NewTimer(time.Until(next))
		select {
		case <-t.C:
		case <-p.stop:
			t.Stop()
			if !ready {
				// The step is over: leave the endpoints as the datapath
				// was installed with.
				p.mark(ctx, true, time.Time{})
			}
			return
		}
		next = next.Add(period)
		pctx, cancel := context.WithTimeout(ctx, timeout)
		err := p.probe(pctx, p.pod)
		cancel()
		restarted := p.isRestarted()
		switch {
		case ready && err != nil:
			successes = 0
			if fails++; fails >= p.spec.FailureThreshold {
				ready = false
				p.mark(ctx, false, time.Now())
			}
		case ready:
			fails = 0
			if restarted {
				return // back before anyone noticed
			}
		case err != nil:
			successes = 0
		default:
			if successes++; successes >= p.spec.SuccessThreshold && restarted {
				p.mark(ctx, true, time.Now())
				return
			}
		}
	}
}

func (p *prober) isRestarted() bool {
	select {
	case <-p.restarted:
		return true
	default:
		return false
	}
}

// mark sets the pod's readiness and records when (at zero: not recorded).
func (p *prober) mark(ctx context.Context, ready bool, at time.Time) {
	var err error
	if p.setReady != nil {
		sctx, cancel := context.WithTimeout(ctx, RecoverTimeout)
		err = p.setReady(sctx, p.pod, ready)
		cancel()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.errs = append(p.errs, fmt.Errorf("mark %s ready=%t: %w", p.pod.Name, ready, err))
	}
	switch {
	case at.IsZero():
	case ready:
		p.readyAt = at
	default:
		p.notReadyAt = at
	}
}

// workloadRestarted tells the probe that the workload serves again.
func (p *prober) workloadRestarted() {
	p.mu.Lock()
	p.restartedAt = time.Now()
	p.mu.Unlock()
	close(p.restarted)
}

// wait waits until the probe has put the pod back, or until stop closes
// (then it ends the probe, leaving the pod ready), and returns the errors
// of setting its readiness.
func (p *prober) wait(stop <-chan struct{}) error {
	select {
	case <-p.done:
	case <-stop:
		close(p.stop)
		<-p.done
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return errors.Join(p.errs...)
}

// readinessRecord sums up the probes of a kill's pods: the latest of their
// times, -1 when any pod never got there.
func readinessRecord(spec scenarios.Probe, probers []*prober) *results.ReadinessRecord {
	r := &results.ReadinessRecord{
		PeriodS: time.Duration(spec.Period).Seconds(), FailureThreshold: spec.FailureThreshold, SuccessThreshold: spec.SuccessThreshold,
		NotReadyS: -1, ReadyS: -1,
	}
	notReady, ready := 0.0, 0.0
	for i, p := range probers {
		p.mu.Lock()
		nr, rd := -1.0, -1.0
		if !p.notReadyAt.IsZero() {
			nr = p.notReadyAt.Sub(p.killedAt).Seconds()
		}
		if !p.readyAt.IsZero() && !p.restartedAt.IsZero() {
			rd = max(0, p.readyAt.Sub(p.restartedAt).Seconds())
		}
		p.mu.Unlock()
		if i == 0 || nr < 0 || (notReady >= 0 && nr > notReady) {
			notReady = nr
		}
		if i == 0 || rd < 0 || (ready >= 0 && rd > ready) {
			ready = rd
		}
	}
	if len(probers) > 0 {
		r.NotReadyS, r.ReadyS = notReady, ready
		r.Source = probers[0].source
	}
	if r.Source == "" {
		r.Source = "the harness's probe"
	}
	return r
}

// readiness returns the readiness probe of pod's service.
func (env *Env) readiness(pod *testbed.Pod) scenarios.Probe {
	if env.Readiness != nil {
		return env.Readiness(pod)
	}
	return scenarios.DefaultProbe()
}
