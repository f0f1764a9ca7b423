package fake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"

	"github.com/meshbench/meshbench/harness/testbed"
)

// FirstPID is the pid of the first fake process. It is PID_MAX_LIMIT, above
// any pid Linux hands out, so that reading /proc for a fake pid finds
// nothing rather than another process.
const FirstPID = 1 << 22

// NetnsDir is the directory the fake namespace paths are under. Nothing is
// created there.
const NetnsDir = "/var/run/netns"

// Provider is a testbed.Provider whose clusters exist only in memory. Set
// its hooks before the first Create; a zero Provider builds every cluster
// it is asked for and runs every process as Idle.
type Provider struct {
	// FailCreate, when set, is called by Create with the spec; a non-nil
	// error fails Create, which then creates nothing.
	FailCreate func(spec testbed.Spec) error
	// FailStart, when set, is called by Start (pod set) and StartOnNode
	// (pod nil) before starting spec; a non-nil error fails the start.
	FailStart func(spec testbed.ProcessSpec, pod *testbed.Pod, node *testbed.Node) error
	// FailDestroy, when set, is called by each Destroy after it stopped the
	// processes; its error is Destroy's.
	FailDestroy func(c *Cluster) error
	// Programs are what processes do, by ProcessSpec.Name; a name not in
	// the map runs Idle.
	Programs map[string]Program
	// Trace, when set, is called with every call the fakes record ("create
	// <run>", "start <name> in <pod|node>", "destroy <run>", "down <run>"),
	// in order; tests share it with other fakes to check the order of
	// calls across them. It must be safe for concurrent use.
	Trace func(event string)

	mu       sync.Mutex
	clusters []*Cluster
	downs    []string
	nextPID  int
}

var _ testbed.Provider = (*Provider)(nil)

// Name returns "fake".
func (p *Provider) Name() string { return "fake" }

// Create builds the cluster spec describes, in memory: nodes n<i> at
// 198.19.0.<i+1>, and each node's pods at 198.18.<i>.<10+k>, as the netns
// provider addresses them.
func (p *Provider) Create(ctx context.Context, spec testbed.Spec) (testbed.Cluster, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("create cluster %s: %w", spec.RunID, err)
	}
	p.trace("create " + spec.RunID)
	if p.FailCreate != nil {
		if err := p.FailCreate(spec); err != nil {
			return nil, err
		}
	}
	c, err := build(spec)
	if err != nil {
		return nil, err
	}
	c.prov = p
	p.mu.Lock()
	p.clusters = append(p.clusters, c)
	p.mu.Unlock()
	return c, nil
}

// Down destroys the clusters of runID (every run's when runID is "") that
// were not destroyed yet, and returns their namespaces.
func (p *Provider) Down(ctx context.Context, runID string) ([]string, error) {
	p.trace("down " + runID)
	p.mu.Lock()
	p.downs = append(p.downs, runID)
	clusters := slices.Clone(p.clusters)
	p.mu.Unlock()
	var removed []string
	var errs []error
	for _, c := range clusters {
		if (runID != "" && c.spec.RunID != runID) || c.Destroyed() {
			continue
		}
		if err := c.Destroy(ctx); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, c.Namespaces()...)
	}
	return removed, errors.Join(errs...)
}

// Clusters returns the clusters Create built, in order.
func (p *Provider) Clusters() []*Cluster {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.clusters)
}

// Downs returns the run ids Down was called with, in order.
func (p *Provider) Downs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.downs)
}

func (p *Provider) trace(event string) {
	if p != nil && p.Trace != nil {
		p.Trace(event)
	}
}

// pid hands out the next fake pid.
func (p *Provider) pid() int {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.nextPID++
	return FirstPID + p.nextPID - 1
}

// NewCluster builds a cluster as spec asks without a provider: processes
// started in it run as Idle. Tests of code that only reads handles use it.
func NewCluster(spec testbed.Spec) (*Cluster, error) {
	c, err := build(spec)
	if err != nil {
		return nil, err
	}
	c.prov = &Provider{}
	return c, nil
}

// Cluster is a testbed.Cluster in memory.
type Cluster struct {
	prov   *Provider
	spec   testbed.Spec
	nodes  []*testbed.Node
	pods   []*testbed.Pod
	byName map[string]*testbed.Pod

	mu        sync.Mutex
	procs     []*Proc
	destroyed int
}

var _ testbed.Cluster = (*Cluster)(nil)

func build(spec testbed.Spec) (*Cluster, error) {
	if spec.RunID == "" {
		return nil, errors.New("create cluster: no run id")
	}
	if spec.Nodes < 1 || spec.Nodes > 256 {
		return nil, fmt.Errorf("create cluster %s: nodes %d: want 1 to 256", spec.RunID, spec.Nodes)
	}
	c := &Cluster{spec: spec, byName: map[string]*testbed.Pod{}}
	for i := range spec.Nodes {
		c.nodes = append(c.nodes, &testbed.Node{
			Name:      fmt.Sprintf("n%d", i),
			Index:     i,
			IP:        netip.AddrFrom4([4]byte{198, 19, 0, byte(i + 1)}),
			PodCIDR:   netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i), 0}), 24),
			Gateway:   netip.AddrFrom4([4]byte{198, 18, byte(i), 1}),
			NetnsPath: filepath.Join(NetnsDir, "mb-"+spec.RunID+"-"+fmt.Sprintf("n%d", i)),
			Uplink:    "uplink",
			Bridge:    "br0",
		})
	}
	perNode := make([]int, spec.Nodes)
	for j, ps := range spec.Pods {
		switch {
		case ps.Name == "":
			return nil, fmt.Errorf("create cluster %s: pod %d has no name", spec.RunID, j)
		case c.byName[ps.Name] != nil:
			return nil, fmt.Errorf("create cluster %s: pod name %q used twice", spec.RunID, ps.Name)
		case ps.Node < 0 || ps.Node >= spec.Nodes:
			return nil, fmt.Errorf("create cluster %s: pod %s: node %d out of range 0..%d", spec.RunID, ps.Name, ps.Node, spec.Nodes-1)
		case perNode[ps.Node] >= 245:
			return nil, fmt.Errorf("create cluster %s: node %d: more than 245 pods", spec.RunID, ps.Node)
		}
		k := perNode[ps.Node]
		perNode[ps.Node]++
		ip := netip.AddrFrom4([4]byte{198, 18, byte(ps.Node), byte(10 + k)})
		pod := &testbed.Pod{
			Name:        ps.Name,
			Node:        c.nodes[ps.Node].Name,
			NodeIndex:   ps.Node,
			IP:          ip,
			MAC:         mac(0x00, ip),
			NetnsPath:   filepath.Join(NetnsDir, "mb-"+spec.RunID+"-"+ps.Name),
			HostVeth:    fmt.Sprintf("mb%sp%d", spec.RunID, j),
			PodVeth:     "eth0",
			HostVethMAC: mac(0x01, ip),
		}
		c.pods = append(c.pods, pod)
		c.byName[pod.Name] = pod
	}
	return c, nil
}

// mac is a locally administered address of kind for a, as the netns
// provider makes them.
func mac(kind byte, a netip.Addr) string {
	b := a.As4()
	return net.HardwareAddr{0x02, kind, b[0], b[1], b[2], b[3]}.String()
}

// RunID returns the spec's run id.
func (c *Cluster) RunID() string { return c.spec.RunID }

// Spec returns the spec the cluster was built from.
func (c *Cluster) Spec() testbed.Spec { return c.spec }

// Nodes returns the nodes in index order.
func (c *Cluster) Nodes() []*testbed.Node { return slices.Clone(c.nodes) }

// Pods returns the pods in spec order.
func (c *Cluster) Pods() []*testbed.Pod { return slices.Clone(c.pods) }

// Pod returns the named pod or nil.
func (c *Cluster) Pod(name string) *testbed.Pod { return c.byName[name] }

// Namespaces returns the paths the fabric's, the nodes' and the pods'
// namespaces would have. None exists.
func (c *Cluster) Namespaces() []string {
	out := []string{filepath.Join(NetnsDir, "mb-"+c.spec.RunID+"-fab")}
	for _, n := range c.nodes {
		out = append(out, n.NetnsPath)
	}
	for _, p := range c.pods {
		out = append(out, p.NetnsPath)
	}
	return out
}

// Start starts spec's program as a process of pod.
func (c *Cluster) Start(ctx context.Context, pod *testbed.Pod, spec testbed.ProcessSpec) (*testbed.Process, error) {
	if pod == nil || c.byName[pod.Name] != pod {
		return nil, fmt.Errorf("start %s: pod not in cluster %s", spec.Name, c.spec.RunID)
	}
	return c.start(ctx, pod, c.nodes[pod.NodeIndex], spec)
}

// StartOnNode starts spec's program as a process of node.
func (c *Cluster) StartOnNode(ctx context.Context, node *testbed.Node, spec testbed.ProcessSpec) (*testbed.Process, error) {
	if node == nil || node.Index < 0 || node.Index >= len(c.nodes) || c.nodes[node.Index] != node {
		return nil, fmt.Errorf("start %s: node not in cluster %s", spec.Name, c.spec.RunID)
	}
	return c.start(ctx, nil, node, spec)
}

func (c *Cluster) start(ctx context.Context, pod *testbed.Pod, node *testbed.Node, spec testbed.ProcessSpec) (*testbed.Process, error) {
	where := "node " + node.Name
	if pod != nil {
		where = "pod " + pod.Name
	}
	c.prov.trace("start " + spec.Name + " in " + where)
	switch {
	case len(spec.Args) == 0:
		return nil, fmt.Errorf("start %s in %s: no command", spec.Name, where)
	case ctx.Err() != nil:
		return nil, fmt.Errorf("start %s in %s: %w", spec.Name, where, ctx.Err())
	case c.Destroyed():
		return nil, fmt.Errorf("start %s in %s: cluster %s destroyed", spec.Name, where, c.spec.RunID)
	}
	if c.prov.FailStart != nil {
		if err := c.prov.FailStart(spec, pod, node); err != nil {
			return nil, fmt.Errorf("start %s in %s: %w", spec.Name, where, err)
		}
	}
	prog := c.prov.Programs[spec.Name]
	if prog == nil {
		prog = Idle
	}
	pr := newProc(c.prov.pid(), spec, pod, node)
	c.mu.Lock()
	c.procs = append(c.procs, pr)
	c.mu.Unlock()
	go pr.run(prog)
	return pr.Process, nil
}

// Processes returns the processes started that have not exited.
func (c *Cluster) Processes() []*testbed.Process {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*testbed.Process
	for _, p := range c.procs {
		if !p.Process.Exited() {
			out = append(out, p.Process)
		}
	}
	return out
}

// Started returns every process started in the cluster, exited or not, in
// the order they started.
func (c *Cluster) Started() []*Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.procs)
}

// Destroy stops every process (SIGTERM, then SIGKILL after
// testbed.StopGrace) and marks the cluster destroyed. It is safe to call
// more than once.
func (c *Cluster) Destroy(ctx context.Context) error {
	c.prov.trace("destroy " + c.spec.RunID)
	c.mu.Lock()
	c.destroyed++
	procs := slices.Clone(c.procs)
	c.mu.Unlock()
	var errs []error
	for _, p := range procs {
		errs = append(errs, p.Process.Stop(ctx))
	}
	if c.prov.FailDestroy != nil {
		errs = append(errs, c.prov.FailDestroy(c))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("destroy cluster %s: %w", c.spec.RunID, err)
	}
	return nil
}

// Destroyed reports whether Destroy ran.
func (c *Cluster) Destroyed() bool { return c.DestroyCalls() > 0 }

// DestroyCalls returns how many times Destroy ran.
func (c *Cluster) DestroyCalls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.destroyed
}

// Program is what a fake process does. It runs in its own goroutine from
// Start, and the process exits when it returns, with the error it returns
// as its exit error. ctx ends when the process is sent SIGKILL (the process
// has then exited already, and what the program returns is ignored); other
// signals arrive on p.Signals.
type Program func(ctx context.Context, p *Proc) error

// Idle runs until it is sent SIGTERM or SIGINT, then exits cleanly.
func Idle(ctx context.Context, p *Proc) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case sig := <-p.Signals:
			if sig == syscall.SIGTERM || sig == os.Interrupt {
				return nil
			}
		}
	}
}

// Exit returns a program that exits at once with err.
func Exit(err error) Program {
	return func(context.Context, *Proc) error { return err }
}

// ErrKilled is the exit error of a process sent SIGKILL.
var ErrKilled = errors.New("signal: killed")

// Proc is one fake process: what it was started with, and its handle.
type Proc struct {
	// Spec is what the process was started with.
	Spec testbed.ProcessSpec
	// Pod is nil for a process started on a node.
	Pod  *testbed.Pod
	Node *testbed.Node
	// Process is the handle Start returned.
	Process *testbed.Process
	// Signals receives the signals sent to the process, except SIGKILL. It
	// holds up to 8 signals the program has not taken; more are dropped.
	Signals <-chan os.Signal
	// Stdout and Stderr are Spec's, or io.Discard.
	Stdout, Stderr io.Writer

	signals chan os.Signal
	ctx     context.Context
	kill    context.CancelFunc
	exited  func(error)
	mu      sync.Mutex
	sent    []os.Signal
}

func newProc(pid int, spec testbed.ProcessSpec, pod *testbed.Pod, node *testbed.Node) *Proc {
	pr := &Proc{Spec: spec, Pod: pod, Node: node, signals: make(chan os.Signal, 8), Stdout: spec.Stdout, Stderr: spec.Stderr}
	pr.Signals = pr.signals
	if pr.Stdout == nil {
		pr.Stdout = io.Discard
	}
	if pr.Stderr == nil {
		pr.Stderr = io.Discard
	}
	podName := ""
	if pod != nil {
		podName = pod.Name
	}
	pr.ctx, pr.kill = context.WithCancel(context.Background())
	pr.Process, pr.exited = testbed.NewProcess(spec.Name, spec.Role, podName, node.Name, pid, pr.signal)
	return pr
}

// signal is the process's signal delivery: SIGKILL ends it at once, other
// signals are queued for its program.
func (pr *Proc) signal(sig os.Signal) error {
	pr.mu.Lock()
	pr.sent = append(pr.sent, sig)
	pr.mu.Unlock()
	if sig == syscall.SIGKILL {
		pr.exited(ErrKilled)
		pr.kill()
		return nil
	}
	select {
	case pr.signals <- sig:
	default:
	}
	return nil
}

func (pr *Proc) run(prog Program) {
	err := prog(pr.ctx, pr)
	pr.exited(err)
	pr.kill()
}

// Sent returns the signals sent to the process, in order.
func (pr *Proc) Sent() []os.Signal {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return slices.Clone(pr.sent)
}
