package datapaths

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"

	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/scenarios"
)

// ErrNotSupported is returned (wrapped, with the reason) by Install when this
// host lacks something the datapath needs.
var ErrNotSupported = errors.New("not supported")

// Datapath is one service-mesh architecture. A value is used for one
// install/uninstall cycle on one cluster.
type Datapath interface {
	// Name is the datapath's name in scenarios and results.
	Name() string
	// Install sets the datapath up on env's cluster so that it carries the
	// traffic of env's services. On error it removes what it set up.
	Install(ctx context.Context, env *Env) error
	// Target returns the address the load client sends a service's
	// requests to: several addresses are used round robin.
	Target(svc *Service) []netip.AddrPort
	// Counters reads the datapath's own counters, the proof that it carries
	// the traffic. The runner reads them before the load, at the start of
	// the measured window and at its end, and passes the differences to
	// Verify.
	Counters(ctx context.Context) (map[string]int64, error)
	// Verify holds the counter deltas of one window to the work the load
	// client did in it. Each check states the exact work the path must
	// have done (so that it fails when a hop is skipped) and the reason
	// for its tolerance. The path is proven when there is at least one
	// check and every check passes.
	Verify(delta map[string]int64, w Work) []results.ProofCheck
	// ProofSource says where the counters come from.
	ProofSource() string
	// Uninstall removes everything Install set up. It is safe to call after
	// a failed or partial Install and more than once.
	Uninstall(ctx context.Context) error
}

// MetricsReporter is implemented by datapaths that measure something about
// themselves at install, such as configuration push latency or which proxy
// engine runs. The runner records the values with every step.
type MetricsReporter interface {
	// DatapathMetrics returns named values; names say their unit
	// ("xds_push_to_ack_us").
	DatapathMetrics() map[string]float64
}

// EngineNotesReporter is implemented by datapaths whose proxy engine may
// apply some settings of the mesh configuration otherwise than configured
// (the haproxy engine renders xDS as haproxy.cfg, which has no equivalent
// for some settings). The runner records the notes with every step.
type EngineNotesReporter interface {
	// EngineNotes returns the engine's notes, each a setting it did not
	// apply as configured in its own words, distinct and sorted, as last
	// read from the proxies (by Counters); none when it applied everything
	// or has not been read. It does not fail.
	EngineNotes() []string
}

// FootprintReporter is implemented by datapaths that hold memory their
// processes' RSS does not show (BPF programs and maps), or whose per-node
// processes grow with the pods they serve (afxdp's socket per pod). The
// runner records the footprint with every step; reports extrapolate memory
// to larger clusters from it and the processes' PSS.
type FootprintReporter interface {
	// Footprint returns what the datapath holds now, from its own objects
	// or its last Counters read; it does not fail: what it could not read
	// is left 0 and Basis says so.
	Footprint() results.Footprint
}

// EndpointUpdater is implemented by datapaths with a control plane: the
// runner tells them when a pod's workload goes down and comes back (chaos
// pod-kill), as a Kubernetes endpoints controller would.
type EndpointUpdater interface {
	// SetPodHealth marks pod's endpoints healthy or not and pushes the
	// change to every proxy, returning once they have ACKed it.
	SetPodHealth(ctx context.Context, pod string, healthy bool) error
}

// PodReplacer is implemented by datapaths with per-pod state (rules,
// sidecars, BPF attachments, endpoint addresses) that run on clusters
// whose controller replaces deleted pods (testbed.PodReplacer): chaos
// pod-kill deletes a pod there, and the datapath follows its replacement,
// as a mesh injects itself into every new pod.
type PodReplacer interface {
	// PodDeleted is called just before pod is deleted. It must not change
	// what any proxy does: it only stops waiting for what goes with the
	// pod (its sidecar's ACKs).
	PodDeleted(ctx context.Context, pod *testbed.Pod) error
	// PodReplaced is called once pod points at its replacement (new IP,
	// namespaces and cgroups), before its workload starts: the datapath
	// sets its per-pod part up there and returns once it serves.
	PodReplaced(ctx context.Context, pod *testbed.Pod) error
}

// ProcessRestarter is implemented by datapaths that can restart one of
// their processes after chaos proxy-kill killed it, as a kubelet restarts
// a crashed container.
type ProcessRestarter interface {
	// RestartProcess starts the datapath process that replaces killed and
	// returns once it is ready.
	RestartProcess(ctx context.Context, killed *testbed.Process) error
}

// Env is what a datapath is installed on.
type Env struct {
	Cluster  testbed.Cluster
	Services []*Service
	// Client is the pod that runs the load client.
	Client *testbed.Pod
	// Load is the service the client loads (one of Services).
	Load *Service
	// Exec is the command prefix that runs a meshbench subcommand (for
	// example the path of the meshbench binary).
	Exec   []string
	Logger *slog.Logger
}

// Service is one service of the scenario, resolved onto the cluster.
type Service struct {
	Name string
	Port int
	// VIP is the service's virtual address (198.19.128.0/17), for datapaths
	// that resolve services themselves.
	VIP netip.Addr
	// ClusterAddr is the cluster's own address for the service (a
	// Kubernetes ClusterIP, balanced by kube-proxy or the CNI), when the
	// provider has a service layer; invalid on the embedded testbed.
	ClusterAddr netip.Addr
	Backends    []*testbed.Pod
	// Mesh is the scenario's mesh policy for the service (engine, LB
	// policy, circuit breakers, retries), with defaults filled in.
	Mesh scenarios.MeshPolicy
}
