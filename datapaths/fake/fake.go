package fake

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/harness/results"
)

// Datapath is a datapaths.Datapath that installs nothing. Set its hooks
// before use; a zero Datapath is named "fake", installs and uninstalls
// without error, targets the service's backends, returns empty counters
// and proves every window with one passing check.
type Datapath struct {
	// ID is what Name returns; default "fake".
	ID string
	// InstallErr and UninstallErr, when set, are what Install and
	// Uninstall return (after recording the call).
	InstallErr   error
	UninstallErr error
	// CountersFunc, when set, returns the n-th call's counters (n from 1).
	CountersFunc func(n int) (map[string]int64, error)
	// VerifyFunc, when set, is Verify.
	VerifyFunc func(delta map[string]int64, w datapaths.Work) []results.ProofCheck
	// Metrics, when set, is what DatapathMetrics returns.
	Metrics map[string]float64
	// Notes, when set, is what EngineNotes returns.
	Notes []string
	// Memory, when set, is what Footprint returns (else the zero
	// Footprint: nothing to report).
	Memory *results.Footprint
	// Trace, when set, is called with every call ("install <name>",
	// "target <name>", "counters <name>", "verify <name>", "uninstall
	// <name>"), in order;
	// tests share it with other fakes to check the order of calls across
	// them. It must be safe for concurrent use.
	Trace func(event string)

	mu    sync.Mutex
	calls Calls
	env   *datapaths.Env
	works []datapaths.Work
}

var (
	_ datapaths.Datapath            = (*Datapath)(nil)
	_ datapaths.MetricsReporter     = (*Datapath)(nil)
	_ datapaths.EngineNotesReporter = (*Datapath)(nil)
	_ datapaths.FootprintReporter   = (*Datapath)(nil)
)

// Calls counts the calls made to a Datapath.
type Calls struct {
	Install, Uninstall, Target, Counters, Verify int
}

// Name returns ID, or "fake".
func (d *Datapath) Name() string {
	if d.ID == "" {
		return "fake"
	}
	return d.ID
}

// Install records env and returns InstallErr.
func (d *Datapath) Install(ctx context.Context, env *datapaths.Env) error {
	d.record("install", func(c *Calls) { c.Install++ })
	d.mu.Lock()
	d.env = env
	d.mu.Unlock()
	return d.InstallErr
}

// Target returns the service's backends' addresses on its port.
func (d *Datapath) Target(svc *datapaths.Service) []netip.AddrPort {
	d.record("target", func(c *Calls) { c.Target++ })
	out := make([]netip.AddrPort, 0, len(svc.Backends))
	for _, p := range svc.Backends {
		out = append(out, netip.AddrPortFrom(p.IP, uint16(svc.Port)))
	}
	return out
}

// Counters returns CountersFunc's counters, or none.
func (d *Datapath) Counters(ctx context.Context) (map[string]int64, error) {
	n := d.record("counters", func(c *Calls) { c.Counters++ }).Counters
	if d.CountersFunc == nil {
		return map[string]int64{}, nil
	}
	m, err := d.CountersFunc(n)
	if err != nil {
		return nil, fmt.Errorf("datapath %s: %w", d.Name(), err)
	}
	return maps.Clone(m), nil
}

// Verify records w and returns VerifyFunc's checks, or one check that
// passes.
func (d *Datapath) Verify(delta map[string]int64, w datapaths.Work) []results.ProofCheck {
	d.record("verify", func(c *Calls) { c.Verify++ })
	d.mu.Lock()
	d.works = append(d.works, w)
	d.mu.Unlock()
	if d.VerifyFunc != nil {
		return d.VerifyFunc(delta, w)
	}
	return []results.ProofCheck{{Name: "the fake datapath checks nothing", Want: "—", Figure: "—", OK: true}}
}

// ProofSource says the counters are the fake's.
func (d *Datapath) ProofSource() string { return "the fake datapath's counters" }

// DatapathMetrics returns Metrics.
func (d *Datapath) DatapathMetrics() map[string]float64 { return maps.Clone(d.Metrics) }

// EngineNotes returns Notes.
func (d *Datapath) EngineNotes() []string { return slices.Clone(d.Notes) }

// Footprint returns *Memory, or the zero Footprint.
func (d *Datapath) Footprint() results.Footprint {
	if d.Memory == nil {
		return results.Footprint{}
	}
	return *d.Memory
}

// Uninstall returns UninstallErr.
func (d *Datapath) Uninstall(ctx context.Context) error {
	d.record("uninstall", func(c *Calls) { c.Uninstall++ })
	return d.UninstallErr
}

// Calls returns how many times each method was called.
func (d *Datapath) Calls() Calls {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls
}

// Env returns what Install was last called with, or nil.
func (d *Datapath) Env() *datapaths.Env {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.env
}

// Works returns the work Verify was called with, in order.
func (d *Datapath) Works() []datapaths.Work {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.works)
}

// record counts one call with inc, traces it, and returns the counts.
func (d *Datapath) record(call string, inc func(*Calls)) Calls {
	d.mu.Lock()
	inc(&d.calls)
	c := d.calls
	d.mu.Unlock()
	if d.Trace != nil {
		d.Trace(call + " " + d.Name())
	}
	return c
}
