package testbed

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"time"

	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/internal/nsutil"
)

// ErrNotSupported is returned (wrapped) when a provider cannot run on this
// host, with the reason in the wrapping message.
var ErrNotSupported = errors.New("not supported")

// Provider creates clusters. Implementation: netns (the embedded testbed,
// the default).
type Provider interface {
	// Name is the provider's name as given on the command line.
	Name() string
	// Create builds a cluster as spec asks and returns it ready: every node
	// and pod exists, is addressed and can reach every other pod. On error,
	// Create removes everything it created before returning.
	Create(ctx context.Context, spec Spec) (Cluster, error)
	// Down removes every object that runs of this provider left behind:
	// those of runID, or of every run when runID is "". It reports what it
	// removed and joins the errors of what it could not remove.
	Down(ctx context.Context, runID string) ([]string, error)
}

// Spec describes the cluster to build.
type Spec struct {
	// RunID is a short lower-case hex id carried in every object's name.
	RunID string
	// Nodes is the number of nodes, at least 1.
	Nodes int
	// Pods are placed on nodes by index.
	Pods []PodSpec
	// Services group pods behind a port. Providers with a service layer of
	// their own (Kubernetes: a Service and its ClusterIP) create them;
	// the embedded testbed has none and ignores them.
	Services []ServiceSpec
}

// ServiceSpec describes one service.
type ServiceSpec struct {
	Name string
	Port int
	// Backends are the names of the pods that serve it.
	Backends []string
	// Readiness is the backends' readiness probe, for a cluster that
	// probes them itself (a kubelet); nil: the default probe.
	Readiness *Probe
}

// Probe is a readiness probe's timing, as a scenario's readiness_probe
// gives it.
type Probe struct {
	Period, Timeout                    time.Duration
	FailureThreshold, SuccessThreshold int
}

// ReadinessWatcher is a cluster whose own machinery decides when a pod
// serves: a kubelet probes each backend, and the endpoints controller
// takes it out of its Service's endpoints and puts it back. Chaos then
// follows that, rather than probing itself.
type ReadinessWatcher interface {
	// WatchReady calls fn with the pod's readiness as the cluster sees
	// it, once at the start and on every change, until stop is called.
	// ok is false when the cluster does not probe pod (no service of its).
	WatchReady(ctx context.Context, pod *Pod, fn func(ready bool)) (stop func(), ok bool, err error)
	// WaitServing waits until the cluster sees every one of pods that it
	// probes ready.
	WaitServing(ctx context.Context, pods []*Pod) error
	// ReadinessSource says who decides, for the results ("kubelet
	// httpGet /healthz every 1s, via EndpointSlices").
	ReadinessSource() string
}

// Describer is a cluster that can describe itself for the results: a
// Kubernetes cluster's version and nodes (the embedded testbed runs on the
// machine the results already describe).
type Describer interface {
	Describe(ctx context.Context) (*results.Cluster, error)
}

// Exposer is a cluster whose processes cannot reach this process's unix
// sockets directly (their nodes are elsewhere, or reached through node
// agents). Expose makes socket reachable from every node's processes, at
// paths[i] on node i; stop ends that.
type Exposer interface {
	Expose(ctx context.Context, socket string) (paths []string, stop func(), err error)
}

// ServiceAddresser is a cluster with a service layer of its own: the
// address (a Kubernetes ClusterIP) at which the cluster itself balances
// a Spec service over its backends.
type ServiceAddresser interface {
	ServiceAddr(name string) (netip.Addr, bool)
}

// PodReplacer is a cluster whose pods a controller replaces when they are
// deleted (a Kubernetes Deployment's ReplicaSet). Chaos pod-kill deletes
// such pods, as Chaos Mesh does, instead of crashing their workload.
type PodReplacer interface {
	// DeletePod deletes pod at once (no grace period, as Chaos Mesh's
	// pod-kill) and kills what the harness started in it, as the
	// container runtime kills the pod's containers. It returns the name
	// the cluster knew the deleted pod by.
	DeletePod(ctx context.Context, pod *Pod) (deleted string, err error)
	// AwaitReplacement waits until the pod that replaces pod runs, then
	// points pod at it: its IP, MAC, namespaces, cgroups and veths change
	// in place, its Name and node stay. It returns the replacement's name
	// in the cluster. Nothing runs in the replacement until the harness
	// starts it (the datapath's per-pod part, then the workload); callers
	// change pod only while nothing else reads it.
	AwaitReplacement(ctx context.Context, pod *Pod) (replacement string, err error)
}

// PodSpec describes one pod.
type PodSpec struct {
	// Name is unique in the cluster: lower-case letters, digits and '-'.
	Name string
	// Node is the index of the node that hosts the pod.
	Node int
}

// Cluster is a running testbed.
type Cluster interface {
	// RunID returns the id every object of the cluster carries.
	RunID() string
	// Nodes returns the nodes in index order.
	Nodes() []*Node
	// Pods returns the pods in the order of Spec.Pods.
	Pods() []*Pod
	// Pod returns the pod with that name, or nil.
	Pod(name string) *Pod
	// Namespaces returns the path of every network namespace of the
	// cluster (nodes, pods and fabric), for counters summed over it.
	Namespaces() []string
	// Start starts a process in the pod's network namespace and cgroup and
	// tracks it until it exits or the cluster is destroyed.
	Start(ctx context.Context, pod *Pod, spec ProcessSpec) (*Process, error)
	// StartOnNode starts a process in the node's network namespace (for
	// per-node proxies and forwarders), tracked like Start's.
	StartOnNode(ctx context.Context, node *Node, spec ProcessSpec) (*Process, error)
	// Processes returns the processes started and not yet reaped.
	Processes() []*Process
	// Destroy stops every process and removes every object of the cluster.
	// It is safe to call more than once and joins the errors of what it
	// could not remove.
	Destroy(ctx context.Context) error
}

// Node is the handle of one node.
type Node struct {
	Name  string
	Index int
	// IP is the node's address on the fabric between nodes.
	IP netip.Addr
	// PodCIDR is the prefix the node's pods are addressed from.
	PodCIDR netip.Prefix
	// Gateway is the node's address on its pod bridge.
	Gateway netip.Addr
	// NetnsPath is the node's network namespace.
	NetnsPath string
	// Uplink is the node's interface toward the fabric.
	Uplink string
	// Bridge is the node's pod bridge.
	Bridge string
	// CgroupPath is the cgroup v2 directory of the processes started on
	// the node (StartOnNode creates it), "" without cgroup v2.
	CgroupPath string
	// Host reaches into the node's and its pods' namespaces: nil for this
	// machine, a node agent's client otherwise.
	Host nsutil.Host
}

// Netns returns the node's network namespace, reached through its Host.
func (n *Node) Netns() nsutil.Netns { return nsutil.Netns{Path: n.NetnsPath, Host: n.Host} }

// Pod is the handle of one pod. Datapaths, chaos and metrics act on pods only
// through these fields.
type Pod struct {
	Name string
	// Node is the name of the node hosting the pod; NodeIndex its index.
	Node      string
	NodeIndex int
	IP        netip.Addr
	// MAC is the pod-side interface's hardware address.
	MAC string
	// NetnsPath is the pod's network namespace.
	NetnsPath string
	// CgroupPath is the pod's cgroup v2 directory, "" when the host has no
	// cgroup v2 hierarchy.
	CgroupPath string
	// MemoryCgroupPath is the pod's cgroup v1 memory controller directory on
	// hybrid hosts, "" otherwise.
	MemoryCgroupPath string
	// HostVeth is the node-side end of the pod's veth pair (in the node's
	// namespace); PodVeth the end inside the pod (named eth0).
	HostVeth string
	PodVeth  string
	// HostVethMAC is the node-side end's hardware address.
	HostVethMAC string
	// Host reaches into the pod's namespaces: its node's Host.
	Host nsutil.Host
}

// Netns returns the pod's network namespace, reached through its Host.
func (p *Pod) Netns() nsutil.Netns { return nsutil.Netns{Path: p.NetnsPath, Host: p.Host} }

// ProcessSpec describes a process to start.
type ProcessSpec struct {
	// Name identifies the process in results (for example "echo").
	Name string
	// Role is one of results.RoleClient, RoleServer, RoleDatapath.
	Role string
	// Args is the command line; Args[0] is the program's path.
	Args []string
	Env  []string
	// UID and GID, when UID is non-zero, are the credentials to run as.
	UID, GID uint32
	// Stdout and Stderr receive the process's output; nil discards it.
	Stdout, Stderr io.Writer
}
