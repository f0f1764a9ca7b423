package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/meshbench/meshbench/harness/chaos/impl"

	"github.com/meshbench/meshbench/harness/doctor"
	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/scenarios"
)

// Fault is one kind of fault, bound to its parameters. A Fault value serves
// one timeline entry: Inject applies it to the target, Recover removes
// exactly what Inject applied and may be called more than once (and after a
// failed Inject, to undo what was applied before the failure).
type Fault interface {
	// Kind is the fault's name (scenarios.Faults).
	Kind() string
	// Implementation is how the fault is applied on this host.
	Implementation() string
	// Inject applies the fault to t.
	Inject(ctx context.Context, t Target) error
	// Activity reads the fault's own evidence that it acted (its rules'
	// and programs' counters, its qdisc's statistics, the processes it
	// killed). The timeline calls it just before Recover.
	Activity(ctx context.Context) (results.FaultActivity, error)
	// Recover removes the fault from t.
	Recover(ctx context.Context, t Target) error
}

// Target is a resolved selector: the pods (and nodes) a fault acts on.
type Target struct {
	// Pods are the selected pods, in name order.
	Pods []*testbed.Pod
	// Nodes are the nodes the selector named (proxy-kill also kills their
	// node proxies).
	Nodes []*testbed.Node
	// Peers is the resolved target selector (partition's other side; delay
	// and loss restricted to these peers); nil when the entry has none.
	Peers []*testbed.Pod
	// Others are every pod of the cluster not in Pods: with every node,
	// the receivers of "to" loss when there are no Peers (a per-node proxy
	// receives what a pod sends in its node's namespace).
	Others []*testbed.Pod
	// Direction is "to", "from" or "both".
	Direction string

	allNodes []*testbed.Node
}

// Env is what the chaos timeline needs from the runner.
type Env struct {
	// Cluster is the testbed the faults act on.
	Cluster testbed.Cluster
	// Services maps each service to its replica pods.
	Services map[string][]*testbed.Pod
	// StartWorkload starts the pod's workload again and returns once it
	// serves. pod-kill (which SIGKILLs every process of the pod with role
	// server) calls it when the fault's duration has passed; pod-kill fails
	// without it.
	StartWorkload func(ctx context.Context, pod *testbed.Pod) error
	// Probe is the readiness probe of a pod's workload: nil when it
	// serves. With it, pod-kill runs a probe from each kill until the pod
	// is ready again; nil: no probe, and no endpoint ever changes.
	Probe func(ctx context.Context, pod *testbed.Pod) error
	// SetReady puts a pod into its services' endpoints or takes it out, as
	// a failed or passed readiness probe does; nil when the datapath has
	// no endpoints to update (its clients find out by themselves).
	SetReady func(ctx context.Context, pod *testbed.Pod, ready bool) error
	// Readiness returns the readiness probe settings of a pod; nil:
	// scenarios.DefaultProbe for every pod.
	Readiness func(pod *testbed.Pod) scenarios.Probe
	// PodDeleted and PodReplaced are the datapath's part of a pod delete
	// on a cluster that replaces deleted pods (testbed.PodReplacer), as
	// datapaths.PodReplacer says: called before the delete, and once the
	// pod points at its replacement, before its workload starts. nil:
	// the datapath has nothing per pod.
	PodDeleted, PodReplaced func(ctx context.Context, pod *testbed.Pod) error
	// DatapathProcesses lists the datapath's processes (sidecars, node
	// proxies). nil: Cluster.Processes with role datapath.
	DatapathProcesses func() []*testbed.Process
	// RestartDatapath restarts a datapath process proxy-kill killed. nil:
	// the datapath is expected to restart its own processes.
	RestartDatapath func(ctx context.Context, killed *testbed.Process) error
	// Implementations maps a fault to the implementation to use, as doctor
	// reports it (see FromDoctor); nil or missing: Default.
	Implementations map[string]string
	// Logger receives a record per injection and recovery; nil discards.
	Logger *slog.Logger
	// Exec is the command that runs meshbench in a pod (as a datapath's
	// Env.Exec): faults that need a process of their own in a pod
	// reached through an agent start it with it.
	Exec []string
}

// Default maps each fault to the implementation used when Env does not
// say: the ones that need only iptables, NFQUEUE and TBF.
var Default = map[string]string{
	scenarios.FaultPodKill:   impl.Signal,
	scenarios.FaultProxyKill: impl.Signal,
	scenarios.FaultDelay:     impl.NFQueue,
	scenarios.FaultLoss:      impl.Statistic,
	scenarios.FaultPartition: impl.IptablesDrop,
	scenarios.FaultBandwidth: impl.TBF,
}

// FromDoctor returns the implementation doctor chose for each fault, for
// Env.Implementations. Faults doctor finds impossible are left out.
func FromDoctor(r doctor.Report) map[string]string {
	out := map[string]string{}
	for _, f := range scenarios.Faults {
		if q, ok := r.Requirement(doctor.KindFault, f); ok && q.Ready && q.Using != "" {
			out[f] = q.Using
		}
	}
	return out
}

// Choose returns the implementation this package uses for fault given what
// the host offers (want, from doctor; "" for the default) and whether the
// entry has a target: netem or nfqueue for delay (nfqueue when there is a
// target), tc-bpf or iptables for loss and partition, tbf for bandwidth
// (doctor's htb alternative is not implemented; doctor prefers tbf).
func Choose(fault, want string, hasTarget bool) string {
	switch fault {
	case scenarios.FaultLoss, scenarios.FaultPartition:
		if want == impl.TCBPF {
			return impl.TCBPF
		}
		return Default[fault]
	case scenarios.FaultDelay:
		// netem acts on all of the pod's egress; per-peer delay needs nfqueue.
		if want == impl.Netem && !hasTarget {
			return impl.Netem
		}
		return impl.NFQueue
	default:
		return Default[fault]
	}
}

// OnAgents returns the implementation of fault on a cluster reached
// through node agents, given the one Choose picked: those that act
// through a pod's or node's Host (signals, iptables, tc qdiscs) stay;
// tc-bpf, which loads its program in this process, gives way to iptables.
// nfqueue stays: on such pods its queue is read by a delay-queue process
// the agent starts in the pod.
func OnAgents(fault, using string) string {
	if using == impl.TCBPF {
		return Default[fault]
	}
	return using
}

// throughAgents reports whether c's nodes are reached through agents.
func throughAgents(c testbed.Cluster) bool {
	if c == nil {
		return false
	}
	for _, n := range c.Nodes() {
		if n.Host != nil {
			return true
		}
	}
	return false
}

// New returns the fault of one timeline entry, using impl (from Choose).
// The entry's Name (default: its fault) tags what the fault installs.
func New(e scenarios.ChaosEntry, impl string, env *Env) (Fault, error) {
	tag := e.Name
	if tag == "" {
		tag = e.Fault
	}
	switch e.Fault {
	case scenarios.FaultPodKill:
		return newPodKill(env), nil
	case scenarios.FaultProxyKill:
		return newProxyKill(env), nil
	case scenarios.FaultDelay:
		if e.Delay == nil {
			return nil, errors.New("delay: no delay parameters")
		}
		return newDelay(impl, *e.Delay, tag, env)
	case scenarios.FaultLoss:
		if e.Loss == nil {
			return nil, errors.New("loss: no loss parameters")
		}
		p, err := scenarios.ParseLoss(e.Loss.Loss)
		if err != nil {
			return nil, err
		}
		return newLoss(p, tag, impl), nil
	case scenarios.FaultPartition:
		return newPartition(tag, impl), nil
	case scenarios.FaultBandwidth:
		if e.Bandwidth == nil {
			return nil, errors.New("bandwidth: no bandwidth parameters")
		}
		return newBandwidth(*e.Bandwidth)
	}
	return nil, fmt.Errorf("unknown fault %q", e.Fault)
}

// Resolve turns an entry's selector and target into a Target on env's
// cluster.
func Resolve(e scenarios.ChaosEntry, env *Env) (Target, error) {
	t := Target{Direction: e.Direction, allNodes: env.Cluster.Nodes()}
	if t.Direction == "" {
		t.Direction = "to"
		if e.Fault == scenarios.FaultPartition {
			t.Direction = "both"
		}
	}
	var err error
	if t.Pods, t.Nodes, err = selectPods(e.Selector, e.Mode, e.Value, env); err != nil {
		return t, fmt.Errorf("selector: %w", err)
	}
	if e.Target != nil {
		if t.Peers, _, err = selectPods(e.Target.Selector, e.Target.Mode, e.Target.Value, env); err != nil {
			return t, fmt.Errorf("target: %w", err)
		}
	}
	for _, p := range env.Cluster.Pods() {
		if !slices.Contains(t.Pods, p) {
			t.Others = append(t.Others, p)
		}
	}
	if len(t.Pods) == 0 && e.Fault != scenarios.FaultProxyKill {
		return t, errors.New("selector: selects no pods")
	}
	return t, nil
}

func selectPods(sel scenarios.ChaosSelector, mode, value string, env *Env) ([]*testbed.Pod, []*testbed.Node, error) {
	var pods []*testbed.Pod
	add := func(p *testbed.Pod) {
		if !slices.Contains(pods, p) {
			pods = append(pods, p)
		}
	}
	for _, name := range sel.Pods {
		p := env.Cluster.Pod(name)
		if p == nil {
			return nil, nil, fmt.Errorf("no pod %q", name)
		}
		add(p)
	}
	for _, name := range sel.Services {
		list, ok := env.Services[name]
		if !ok {
			return nil, nil, fmt.Errorf("no service %q", name)
		}
		for _, p := range list {
			add(p)
		}
	}
	var nodes []*testbed.Node
	for _, name := range sel.Nodes {
		i := slices.IndexFunc(env.Cluster.Nodes(), func(n *testbed.Node) bool { return n.Name == name })
		if i < 0 {
			return nil, nil, fmt.Errorf("no node %q", name)
		}
		nodes = append(nodes, env.Cluster.Nodes()[i])
		for _, p := range env.Cluster.Pods() {
			if p.Node == name {
				add(p)
			}
		}
	}
	slices.SortFunc(pods, func(a, b *testbed.Pod) int { return strings.Compare(a.Name, b.Name) })
	n := len(pods)
	switch mode {
	case "", "all":
	case "one":
		n = min(n, 1)
	case "fixed":
		v, err := strconv.Atoi(value)
		if err != nil || v < 1 {
			return nil, nil, fmt.Errorf("mode fixed: bad value %q", value)
		}
		n = min(n, v)
	case "fixed-percent":
		v, err := strconv.Atoi(value)
		if err != nil || v < 1 || v > 100 {
			return nil, nil, fmt.Errorf("mode fixed-percent: bad value %q", value)
		}
		n = min(n, max(1, n*v/100))
	default:
		return nil, nil, fmt.Errorf("unknown mode %q", mode)
	}
	return pods[:n], nodes, nil
}

// describe writes a selector as "pods=a,b services=s nodes=n mode=m".
func describe(sel scenarios.ChaosSelector, mode, value, direction string) string {
	var parts []string
	if len(sel.Pods) > 0 {
		parts = append(parts, "pods="+strings.Join(sel.Pods, ","))
	}
	if len(sel.Services) > 0 {
		parts = append(parts, "services="+strings.Join(sel.Services, ","))
	}
	if len(sel.Nodes) > 0 {
		parts = append(parts, "nodes="+strings.Join(sel.Nodes, ","))
	}
	if mode != "" {
		m := "mode=" + mode
		if value != "" {
			m += ":" + value
		}
		parts = append(parts, m)
	}
	if direction != "" {
		parts = append(parts, "direction="+direction)
	}
	return strings.Join(parts, " ")
}

// parameters writes an entry's parameters as text.
func parameters(e scenarios.ChaosEntry) string {
	switch {
	case e.Delay != nil:
		s := "latency=" + e.Delay.Latency.String()
		if e.Delay.Jitter > 0 {
			s += " jitter=" + e.Delay.Jitter.String()
		}
		return s
	case e.Loss != nil:
		return "loss=" + e.Loss.Loss + "%"
	case e.Bandwidth != nil:
		return fmt.Sprintf("rate=%s limit=%d buffer=%d", e.Bandwidth.Rate, e.Bandwidth.Limit, e.Bandwidth.Buffer)
	case e.Fault == scenarios.FaultPodKill || e.Fault == scenarios.FaultProxyKill:
		return "restart_after=" + e.Duration.String()
	}
	return ""
}

func podNames(pods []*testbed.Pod) []string {
	out := make([]string, len(pods))
	for i, p := range pods {
		out[i] = p.Name
	}
	return out
}
