package proxy

import (
	"context"
	"maps"
	"sync"
)

// Fake is an Engine that runs nothing, for testing datapaths and the runner
// without a proxy. Its counters are set with Set.
type Fake struct {
	// ReadyErr is returned by Ready; StartErr by Start.
	ReadyErr, StartErr error

	mu       sync.Mutex
	started  bool
	counters map[string]int64
}

var _ Engine = (*Fake)(nil)

// Name is "fake".
func (f *Fake) Name() string { return "fake" }

// Start records the start and returns StartErr.
func (f *Fake) Start(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.StartErr != nil {
		return f.StartErr
	}
	f.started = true
	return nil
}

// Ready returns ReadyErr.
func (f *Fake) Ready(context.Context) error { return f.ReadyErr }

// Set sets a counter.
func (f *Fake) Set(name string, v int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.counters == nil {
		f.counters = map[string]int64{}
	}
	f.counters[name] = v
}

// Counters returns a copy of the counters set.
func (f *Fake) Counters(context.Context) (map[string]int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.counters), nil
}

// Stop records the stop.
func (f *Fake) Stop(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.started = false
	return nil
}

// Running says whether Start was called and Stop was not.
func (f *Fake) Running() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.started
}
