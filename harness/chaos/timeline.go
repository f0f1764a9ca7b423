package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/scenarios"
)

// RecoverTimeout bounds the recovery of one fault when Stop or a cancelled
// Run removes it.
const RecoverTimeout = 30 * time.Second

// Timeline applies a scenario's chaos entries during one measured step.
// A Timeline runs once: make a new one for every step.
type Timeline struct {
	entries []scenarios.ChaosEntry

	mu      sync.Mutex
	started bool
	start   time.Time
	records []results.FaultRecord
	active  map[int]*active // entry index -> injected fault
	stop    chan struct{}
	stopped bool
	wg      sync.WaitGroup
	log     *slog.Logger
}

type active struct {
	fault  Fault
	target Target
}

// NewTimeline checks entries (as the scenario validated them) and returns
// a timeline that Run applies.
func NewTimeline(entries []scenarios.ChaosEntry) (*Timeline, error) {
	var errs []error
	for i, e := range entries {
		if e.At < 0 || e.Duration <= 0 {
			errs = append(errs, fmt.Errorf("chaos[%d]: at must be >= 0 and duration > 0", i))
		}
		if _, err := New(e, Choose(e.Fault, "", e.Target != nil), &Env{}); err != nil {
			errs = append(errs, fmt.Errorf("chaos[%d]: %w", i, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Timeline{entries: entries, active: map[int]*active{}, stop: make(chan struct{})}, nil
}

// Run injects each entry's fault at start+At and recovers it Duration
// later, in the background. start is the beginning of the measured window:
// the records' times are seconds from it. The returned channel is closed
// once every fault has been injected and recovered (or has failed), or
// after Stop. When ctx is cancelled, pending faults are not injected and
// active ones are recovered at once. Run must be called at most once.
func (tl *Timeline) Run(ctx context.Context, env Env, start time.Time) <-chan struct{} {
	done := make(chan struct{})
	tl.mu.Lock()
	if tl.started || tl.stopped {
		tl.mu.Unlock()
		close(done)
		return done
	}
	tl.started, tl.start = true, start
	tl.log = env.Logger
	if tl.log == nil {
		tl.log = slog.New(slog.DiscardHandler)
	}
	tl.records = make([]results.FaultRecord, len(tl.entries))
	for i, e := range tl.entries {
		impl := Choose(e.Fault, env.Implementations[e.Fault], e.Target != nil)
		if throughAgents(env.Cluster) {
			impl = OnAgents(e.Fault, impl)
		}
		rec := results.FaultRecord{
			Name: e.ChaosName(i), Fault: e.Fault, Implementation: impl,
			Selector: describe(e.Selector, e.Mode, e.Value, e.Direction), Parameters: parameters(e),
			StartS: -1, EndS: -1, DetectS: -1, RecoverS: -1,
			AllowInactive: e.AllowInactive,
		}
		if e.Target != nil {
			rec.Target = describe(e.Target.Selector, e.Target.Mode, e.Target.Value, "")
		}
		tl.records[i] = rec
		tl.wg.Add(1)
		go tl.runEntry(ctx, &env, i, impl)
	}
	tl.mu.Unlock()
	go func() {
		tl.wg.Wait()
		close(done)
	}()
	return done
}

func (tl *Timeline) since() float64 { return time.Since(tl.start).Seconds() }

func (tl *Timeline) fail(i int, err error) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if tl.records[i].Error == "" {
		tl.records[i].Error = err.Error()
	} else {
		tl.records[i].Error += "; " + err.Error()
	}
}

func (tl *Timeline) runEntry(ctx context.Context, env *Env, i int, impl string) {
	defer tl.wg.Done()
	e := tl.entries[i]
	name := e.ChaosName(i)
	e.Name = name
	if !tl.wait(ctx, tl.start.Add(time.Duration(e.At))) {
		tl.fail(i, errors.New("not injected: the step ended first"))
		return
	}
	t, err := Resolve(e, env)
	if err != nil {
		tl.fail(i, err)
		return
	}
	f, err := New(e, impl, env)
	if err != nil {
		tl.fail(i, err)
		return
	}
	tl.mu.Lock()
	if tl.stopped {
		tl.mu.Unlock()
		tl.fail(i, errors.New("not injected: stopped first"))
		return
	}
	tl.active[i] = &active{fault: f, target: t}
	tl.records[i].StartS = tl.since()
	tl.records[i].Pods = podNames(t.Pods)
	tl.mu.Unlock()
	tl.log.Info("chaos inject", "fault", name, "kind", e.Fault, "implementation", f.Implementation(), "pods", podNames(t.Pods))
	err = f.Inject(ctx, t)
	tl.mu.Lock()
	tl.records[i].Implementation = f.Implementation() // after a fallback, the one in use
	tl.mu.Unlock()
	if err != nil {
		tl.fail(i, fmt.Errorf("inject: %w", err))
		// Undo what was applied before the failure.
		tl.recover(ctx, i)
		return
	}
	tl.wait(ctx, tl.start.Add(time.Duration(e.At+e.Duration)))
	tl.recover(ctx, i)
}

// wait sleeps until t and reports whether it got there (false when ctx was
// cancelled or Stop was called).
func (tl *Timeline) wait(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
	case <-tl.stop:
	}
	return false
}

// recover removes entry i's fault if it is active; it runs even when ctx
// is cancelled, bounded by RecoverTimeout.
func (tl *Timeline) recover(ctx context.Context, i int) {
	tl.mu.Lock()
	a := tl.active[i]
	delete(tl.active, i)
	tl.mu.Unlock()
	if a == nil {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), RecoverTimeout)
	defer cancel()
	act, aerr := a.fault.Activity(rctx)
	err := a.fault.Recover(rctx, a.target)
	tl.mu.Lock()
	tl.records[i].EndS = tl.since()
	if aerr == nil {
		tl.records[i].Activity = &act
	}
	tl.mu.Unlock()
	tl.log.Info("chaos recover", "fault", tl.records[i].Name, "active", act.Active, "activity", act.Detail, "err", err)
	if aerr != nil {
		tl.fail(i, fmt.Errorf("read its activity: %w", aerr))
	}
	if err != nil {
		tl.fail(i, fmt.Errorf("recover: %w", err))
	}
	if s, ok := a.fault.(settler); ok {
		var rec results.FaultRecord
		if err := s.settle(tl.stop, &rec); err != nil {
			tl.fail(i, err)
		}
		tl.mu.Lock()
		tl.records[i].Readiness = rec.Readiness
		tl.mu.Unlock()
	}
}

// settler is a fault that sets something in motion that outlives its
// recovery (pod-kill's readiness probes).
type settler interface {
	// settle waits until it is done, or ends it when stop closes, and
	// fills in what it did in rec.
	settle(stop <-chan struct{}, rec *results.FaultRecord) error
}

// Stop recovers every fault still active and returns the records of every
// entry, in the order of the entries, and the joined recovery errors. It
// runs even when ctx is already cancelled (each recovery is bounded by
// RecoverTimeout), is safe to call more than once and before Run.
func (tl *Timeline) Stop(ctx context.Context) ([]results.FaultRecord, error) {
	tl.mu.Lock()
	if !tl.stopped {
		tl.stopped = true
		close(tl.stop)
	}
	tl.mu.Unlock()
	// Entry goroutines see stop and recover their faults.
	tl.wg.Wait()
	// Anything left (an entry goroutine never runs without Run) is
	// recovered here.
	tl.mu.Lock()
	var left []int
	for i := range tl.active {
		left = append(left, i)
	}
	tl.mu.Unlock()
	sort.Ints(left)
	for _, i := range left {
		tl.recover(ctx, i)
	}
	tl.mu.Lock()
	defer tl.mu.Unlock()
	out := make([]results.FaultRecord, len(tl.records))
	copy(out, tl.records)
	var errs []error
	for _, r := range out {
		switch {
		case r.Error != "" && r.StartS >= 0:
			errs = append(errs, fmt.Errorf("chaos %s: %s", r.Name, r.Error))
		case r.Inactive() && !r.AllowInactive:
			errs = append(errs, fmt.Errorf("chaos %s: inactive: %s (set allow_inactive on the entry if that is expected)", r.Name, r.Activity.Detail))
		}
	}
	return out, errors.Join(errs...)
}
