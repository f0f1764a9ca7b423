package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/datapaths/controlplane"
	"github.com/meshbench/meshbench/datapaths/proxy"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/internal/rundir"
)

// ReadyTimeout bounds the wait for every proxy to be configured and serve.
const ReadyTimeout = 30 * time.Second

// Proxy is one proxy of a fleet: a process in a pod (a sidecar) or on a
// node (a node proxy).
type Proxy struct {
	// Pod or Node is where it runs; exactly one is set.
	Pod  *testbed.Pod
	Node *testbed.Node
	// Spec starts it, at install and again after a crash.
	Spec testbed.ProcessSpec
	// Ready returns nil once the proxy serves (its admin endpoint
	// answers, say).
	Ready func(ctx context.Context) error
	// Stderr keeps the end of its standard error, for error messages; the
	// fleet sets Spec.Stderr to it.
	Stderr *datapaths.Tail
	// Proc is the running process.
	Proc *testbed.Process
}

// Where names the proxy in errors ("pod n1-p0", "node n0").
func (p *Proxy) Where() string {
	if p.Node != nil {
		return "node " + p.Node.Name
	}
	return "pod " + p.Pod.Name
}

// Fleet is a datapath's control plane and its proxies.
type Fleet struct {
	// Session is the control plane; Dir the run directory and Socket the
	// xDS socket in it, which every proxy is started with.
	Session *controlplane.Session
	Dir     string
	Socket  string
	// nodeSockets, when the cluster's processes cannot reach Socket (an
	// Exposer: Kubernetes, or agent mode), are the paths at which node i's
	// processes reach it; unexpose ends that.
	nodeSockets []string
	unexpose    func()
	// Kind names the proxies in errors and logs ("sidecar", "node proxy").
	Kind string

	cluster testbed.Cluster
	runID   string
	proxies []*Proxy
	log     *slog.Logger

	emu sync.Mutex
	// engine holds each proxy's engine figures as last read (NoteEngine),
	// and notes its engine's notes.
	engine map[string]map[string]int64
	notes  map[string][]string
}

// NoteEngine keeps, from a read of a proxy's /stats, the engine's own
// figures (the proxy.EngineCounterPrefix counters), for Metrics, and the
// engine's notes, for Notes, each as last read.
func (f *Fleet) NoteEngine(proxyName string, rd proxy.Reading) {
	m := map[string]int64{}
	for k, v := range rd.Counters {
		if name, ok := strings.CutPrefix(k, proxy.EngineCounterPrefix); ok {
			m[name] = v
		}
	}
	f.emu.Lock()
	defer f.emu.Unlock()
	if len(m) > 0 {
		if f.engine == nil {
			f.engine = map[string]map[string]int64{}
		}
		f.engine[proxyName] = m
	}
	if f.notes == nil {
		f.notes = map[string][]string{}
	}
	f.notes[proxyName] = slices.Clone(rd.Notes)
}

// Notes returns the distinct notes of every proxy's engine as last read
// (NoteEngine), sorted: the settings of the mesh configuration the engines
// did not apply as configured. It is nil when they noted none.
func (f *Fleet) Notes() []string {
	if f == nil {
		return nil
	}
	f.emu.Lock()
	defer f.emu.Unlock()
	var out []string
	for _, ns := range f.notes {
		out = append(out, ns...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Placement says where a fleet's proxies run.
type Placement int

// Placements.
const (
	PerPod  Placement = iota // a sidecar in every pod
	PerNode                  // one proxy on every node
)

// NodeID returns the xDS node id of the proxy of pod (PerPod) or node
// (PerNode) name.
func (pl Placement) NodeID(name string) string {
	if pl == PerNode {
		return controlplane.NodeProxyNodeID(name)
	}
	return controlplane.SidecarNodeID(name)
}

// Start starts the control plane for env's services and for one proxy per
// pod or per node, as placed. On error nothing is left running.
func Start(ctx context.Context, env *datapaths.Env, kind string, pl Placement) (*Fleet, error) {
	var ids []string
	if pl == PerNode {
		for _, n := range env.Cluster.Nodes() {
			ids = append(ids, pl.NodeID(n.Name))
		}
	} else {
		for _, p := range env.Cluster.Pods() {
			ids = append(ids, pl.NodeID(p.Name))
		}
	}
	f := &Fleet{Kind: kind, cluster: env.Cluster, runID: env.Cluster.RunID(), log: env.Logger}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	dir, err := rundir.Ensure(f.runID)
	if err != nil {
		return nil, err
	}
	f.Dir, f.Socket = dir, filepath.Join(dir, "xds.sock")
	if f.Session, err = controlplane.StartSession(ctx, f.Socket, controlplane.ModelOf(env.Services, ids), f.log); err != nil {
		return nil, errors.Join(err, f.Stop(context.WithoutCancel(ctx)))
	}
	if ex, ok := env.Cluster.(testbed.Exposer); ok {
		if f.nodeSockets, f.unexpose, err = ex.Expose(ctx, f.Socket); err != nil {
			return nil, errors.Join(fmt.Errorf("expose the xDS socket on the nodes: %w", err), f.Stop(context.WithoutCancel(ctx)))
		}
	}
	return f, nil
}

// SocketOn returns the path at which processes on node i reach the xDS
// socket: Socket itself, or where the cluster exposes it on that node.
func (f *Fleet) SocketOn(node int) string {
	if f.nodeSockets != nil {
		return f.nodeSockets[node]
	}
	return f.Socket
}

// Launch starts p and adds it to the fleet.
func (f *Fleet) Launch(ctx context.Context, p *Proxy) error {
	if p.Stderr == nil {
		p.Stderr = &datapaths.Tail{Max: 2048}
	}
	p.Spec.Stderr = p.Stderr
	if err := f.start(ctx, p); err != nil {
		return err
	}
	f.proxies = append(f.proxies, p)
	return nil
}

func (f *Fleet) start(ctx context.Context, p *Proxy) error {
	var err error
	if p.Node != nil {
		p.Proc, err = f.cluster.StartOnNode(ctx, p.Node, p.Spec)
	} else {
		p.Proc, err = f.cluster.Start(ctx, p.Pod, p.Spec)
	}
	if err != nil {
		return fmt.Errorf("start %s on %s: %w", f.Kind, p.Where(), err)
	}
	return nil
}

// WaitReady waits, for at most ReadyTimeout, until every proxy ACKed its
// configuration and serves; then it measures the push latency to running
// proxies.
func (f *Fleet) WaitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, ReadyTimeout)
	defer cancel()
	if err := f.Session.WaitAcked(ctx); err != nil {
		return fmt.Errorf("wait for %ss to accept configuration: %w%s", f.Kind, err, f.exited())
	}
	for _, p := range f.proxies {
		if err := f.waitReady(ctx, p); err != nil {
			return err
		}
	}
	// The push latency proper: a new version to proxies that are running.
	return f.Session.MeasurePush(ctx)
}

func (f *Fleet) waitReady(ctx context.Context, p *Proxy) error {
	return datapaths.WaitReady(ctx, f.Kind+" on "+p.Where(), p.Proc, p.Stderr, p.Ready)
}

// exited describes the proxies that exited, with the end of their stderr.
func (f *Fleet) exited() string {
	var b strings.Builder
	for _, p := range f.proxies {
		if p.Proc != nil && p.Proc.Exited() {
			fmt.Fprintf(&b, "; %s on %s exited (%v): %s", f.Kind, p.Where(), p.Proc.Err(), p.Stderr.String())
		}
	}
	return b.String()
}

// Proxies returns the fleet's proxies, in launch order.
func (f *Fleet) Proxies() []*Proxy { return f.proxies }

// SetPodHealth marks pod's endpoints healthy or not and pushes the change
// to every proxy (datapaths.EndpointUpdater).
func (f *Fleet) SetPodHealth(ctx context.Context, pod string, healthy bool) error {
	if f == nil || f.Session == nil {
		return controlplane.ErrNotRunning
	}
	return f.Session.SetPodHealth(ctx, pod, healthy)
}

// Restart starts the proxy whose process was killed again and waits until
// it serves (datapaths.ProcessRestarter).
func (f *Fleet) Restart(ctx context.Context, killed *testbed.Process) error {
	for _, p := range f.proxies {
		if p.Proc != killed {
			continue
		}
		if err := f.start(ctx, p); err != nil {
			return err
		}
		return f.waitReady(ctx, p)
	}
	return fmt.Errorf("process %s (pid %d) is not one of this datapath's %ss", killed.Name, killed.PID, f.Kind)
}

// PodDeleted is called before pod is deleted (chaos pod-kill on a
// testbed.PodReplacer): its sidecar goes with it, so pushes stop waiting
// for its ACKs. It is the harness's bookkeeping only: no proxy is told.
func (f *Fleet) PodDeleted(pod *testbed.Pod) {
	for _, p := range f.proxies {
		if p.Pod == pod {
			f.Session.Leave(controlplane.SidecarNodeID(pod.Name))
		}
	}
}

// PodReplaced is called once pod points at its replacement: its
// endpoints get the replacement's address (pushed to the proxies), and
// its sidecar, if it has one, starts in the replacement and is waited
// for until it has ACKed the configuration and serves.
func (f *Fleet) PodReplaced(ctx context.Context, pod *testbed.Pod) error {
	if f == nil || f.Session == nil {
		return controlplane.ErrNotRunning
	}
	if err := f.Session.SetPodAddress(ctx, pod.Name, pod.IP); err != nil {
		return err
	}
	for _, p := range f.proxies {
		if p.Pod != pod {
			continue
		}
		if err := f.start(ctx, p); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, ReadyTimeout)
		defer cancel()
		if err := f.Session.Rejoin(ctx, controlplane.SidecarNodeID(pod.Name)); err != nil {
			return fmt.Errorf("%s on %s: %w%s", f.Kind, p.Where(), err, f.exited())
		}
		return f.waitReady(ctx, p)
	}
	return nil
}

// Metrics returns the control plane's push latencies and the proxies'
// engine figures as last read (NoteEngine): times ("…_us") and per-proxy
// tallies ("…_notes") as their maximum over the proxies, counts summed.
func (f *Fleet) Metrics() map[string]float64 {
	if f == nil || f.Session == nil {
		return map[string]float64{}
	}
	m := f.Session.Metrics()
	f.emu.Lock()
	defer f.emu.Unlock()
	for _, em := range f.engine {
		for k, v := range em {
			if strings.HasSuffix(k, "_us") || strings.HasSuffix(k, "_notes") {
				m[k] = max(m[k], float64(v))
			} else {
				m[k] += float64(v)
			}
		}
	}
	return m
}

// Stop stops every proxy and the control plane and removes the run
// directory. It is safe on a nil or partly started fleet and more than once.
func (f *Fleet) Stop(ctx context.Context) error {
	if f == nil {
		return nil
	}
	var errs []error
	for _, p := range f.proxies {
		if p.Proc != nil {
			if err := p.Proc.Stop(ctx); err != nil {
				errs = append(errs, fmt.Errorf("stop %s on %s: %w", f.Kind, p.Where(), err))
			}
		}
	}
	f.proxies = nil
	if f.unexpose != nil {
		f.unexpose()
		f.unexpose = nil
	}
	if f.Session != nil {
		f.Session.Stop()
		f.Session = nil
	}
	if f.runID != "" {
		if _, err := rundir.Remove(f.runID); err != nil {
			errs = append(errs, err)
		}
		f.runID = ""
	}
	return errors.Join(errs...)
}
