//go:build !linux

package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/scenarios"
)

// unsupported is every fault outside Linux.
type unsupported struct{ kind string }

func (f unsupported) Kind() string           { return f.kind }
func (f unsupported) Implementation() string { return "" }
func (f unsupported) Inject(ctx context.Context, t Target) error {
	return fmt.Errorf("%s: %w: faults need Linux", f.kind, testbed.ErrNotSupported)
}
func (f unsupported) Recover(ctx context.Context, t Target) error { return nil }
func (f unsupported) Activity(ctx context.Context) (results.FaultActivity, error) {
	return results.FaultActivity{}, nil
}

func newPodKill(env *Env) Fault                 { return unsupported{scenarios.FaultPodKill} }
func newProxyKill(env *Env) Fault               { return unsupported{scenarios.FaultProxyKill} }
func newLoss(p float64, tag, impl string) Fault { return unsupported{scenarios.FaultLoss} }
func newPartition(tag, impl string) Fault       { return unsupported{scenarios.FaultPartition} }

func newDelay(impl string, d scenarios.DelaySpec, tag string, env *Env) (Fault, error) {
	return unsupported{scenarios.FaultDelay}, nil
}

// DelayQueueMain needs Linux's NFQUEUE.
func DelayQueueMain(ctx context.Context, args []string, stdout io.Writer) error {
	return errors.New("delay-queue: Linux only")
}

func newBandwidth(b scenarios.BandwidthSpec) (Fault, error) {
	return unsupported{scenarios.FaultBandwidth}, nil
}
