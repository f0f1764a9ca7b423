//go:build !linux

package netns

import (
	"context"
	"fmt"

	"github.com/meshbench/meshbench/harness/testbed"
)

var errNotLinux = fmt.Errorf("netns provider: network namespaces need Linux: %w", testbed.ErrNotSupported)

// Create is not supported off Linux.
func (p *Provider) Create(ctx context.Context, spec testbed.Spec) (testbed.Cluster, error) {
	return nil, errNotLinux
}

// Down is not supported off Linux.
func (p *Provider) Down(ctx context.Context, runID string) ([]string, error) {
	return nil, errNotLinux
}

// Leftovers is not supported off Linux.
func Leftovers(runID string) ([]string, error) { return nil, errNotLinux }

// Leftovers is not supported off Linux.
func (p *Provider) Leftovers(runID string) ([]string, error) { return nil, errNotLinux }
