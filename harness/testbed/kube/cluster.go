package kube

import (
	"context"

	"github.com/meshbench/meshbench/harness/metrics"
	"github.com/meshbench/meshbench/harness/testbed"
)

// Cluster is what Provider.Create returns: a testbed.Cluster with every
// optional interface the harness looks for. A provider that builds the
// Kubernetes cluster itself and then runs this one on it (kind) wraps it
// as a Cluster, and so keeps them all.
type Cluster interface {
	testbed.Cluster
	testbed.Describer
	testbed.ReadinessWatcher
	testbed.Exposer
	testbed.ServiceAddresser
	// Snapshot reads processes and namespaces through the agents of
	// their nodes.
	Snapshot(ctx context.Context, pids []int, netns []string) (*metrics.Snapshot, error)
}

var _ Cluster = (*cluster)(nil)
