//go:build !linux

package afxdp

import (
	"context"
	"fmt"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/harness/testbed"
)

// Install implements datapaths.Datapath; AF_XDP needs Linux.
func (d *Datapath) Install(ctx context.Context, env *datapaths.Env) error {
	return fmt.Errorf("datapath %s: AF_XDP needs Linux: %w", Name, datapaths.ErrNotSupported)
}

// Uninstall implements datapaths.Datapath.
func (d *Datapath) Uninstall(ctx context.Context) error { return nil }

// RestartProcess implements datapaths.ProcessRestarter.
func (d *Datapath) RestartProcess(ctx context.Context, killed *testbed.Process) error {
	return fmt.Errorf("datapath %s: AF_XDP needs Linux: %w", Name, datapaths.ErrNotSupported)
}
