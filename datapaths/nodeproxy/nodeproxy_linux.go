package nodeproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strconv"

	"github.com/meshbench/meshbench/bpf/steer"
	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/datapaths/controlplane"
	"github.com/meshbench/meshbench/datapaths/proxy"
	"github.com/meshbench/meshbench/datapaths/sidecar"
	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/internal/rundir"
)

// Name is the datapath's name in scenarios and results.
const Name = "nodeproxy"

// Ports the node proxy listens on in its node's namespace.
const (
	OutboundPort = 15001
	InboundPort  = 15006
)

// Hop modes.
const (
	HopsBoth   = "both"   // source node proxy → destination node proxy → pod
	HopsSource = "source" // source node proxy → pod
)

// Options configure the datapath.
type Options struct {
	// Hops is HopsBoth (default) or HopsSource.
	Hops string
}

// Datapath is the eBPF-steered per-node proxy datapath.
type Datapath struct {
	opts Options

	env   *datapaths.Env
	mesh  *controlplane.Mesh
	nodes []*nodeState
	runID string
	log   *slog.Logger
}

// nodeState is what the datapath set up on one node.
type nodeState struct {
	node  *testbed.Node
	proc  *testbed.Process
	spec  testbed.ProcessSpec
	objs  *steer.Objects
	atts  []*steer.Attachment
	rules bool
	tail  *datapaths.Tail
}

var _ datapaths.Datapath = (*Datapath)(nil)

// New returns the nodeproxy datapath.
func New(opts Options) *Datapath {
	if opts.Hops == "" {
		opts.Hops = HopsBoth
	}
	return &Datapath{opts: opts}
}

// Name implements datapaths.Datapath.
func (d *Datapath) Name() string { return Name }

// Install implements datapaths.Datapath. For every node it starts one
// proxy in the node's namespace, loads the connect4 steering programs with
// the node's gateway address as the proxy and attaches them to the cgroups
// of the node's pods, and attaches the getsockopt program to the proxy's
// cgroup so SO_ORIGINAL_DST is answered from the steering map. With both
// hops, a nat PREROUTING rule on the node's uplink sends traffic for the
// node's pods to its proxy's inbound listener, as ambient's ztunnel
// captures inbound traffic.
func (d *Datapath) Install(ctx context.Context, env *datapaths.Env) (err error) {
	d.env = env
	d.log = env.Logger
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.runID = env.Cluster.RunID()
	defer func() {
		if err != nil {
			err = errors.Join(err, d.Uninstall(context.WithoutCancel(ctx)))
		}
	}()
	dir, err := rundir.Ensure(d.runID)
	if err != nil {
		return err
	}
	sock := filepath.Join(dir, "xds.sock")
	nodes := env.Cluster.Nodes()
	ids := make([]string, len(nodes))
	for i, n := range nodes {
		ids[i] = controlplane.NodeProxyNodeID(n.Name)
	}
	if d.mesh, err = controlplane.StartMesh(ctx, sock, controlplane.MeshModel(env.Services, ids), d.log); err != nil {
		return err
	}

	for _, n := range nodes {
		ns := &nodeState{node: n, tail: &datapaths.Tail{Max: 2048}}
		d.nodes = append(d.nodes, ns)
		args := append(append([]string{}, env.Exec...), "proxy",
			"--xds", sock,
			"--node-id", controlplane.NodeProxyNodeID(n.Name),
			"--engine", "builtin",
			"--admin", proxy.DefaultAdminAddr,
			"--outbound-port", strconv.Itoa(OutboundPort),
			"--inbound-port", strconv.Itoa(InboundPort),
			"--inbound-original-ip")
		ns.spec = testbed.ProcessSpec{Name: "nodeproxy", Role: results.RoleDatapath, Args: args, Stderr: ns.tail}
		ns.proc, err = env.Cluster.StartOnNode(ctx, n, ns.spec)
		if err != nil {
			return fmt.Errorf("start proxy on node %s: %w", n.Name, err)
		}
	}
	rctx, rcancel := context.WithTimeout(ctx, sidecar.ReadyTimeout)
	defer rcancel()
	if err := d.mesh.WaitAcked(rctx); err != nil {
		return fmt.Errorf("wait for node proxies to accept configuration: %w%s", err, d.exited())
	}
	for _, ns := range d.nodes {
		if err := d.waitReady(rctx, ns); err != nil {
			return err
		}
	}
	if err := d.mesh.MeasurePush(rctx); err != nil {
		return err
	}

	// Steering: the node proxies are up, so connects can be rewritten.
	for _, ns := range d.nodes {
		if err := d.steerNode(ctx, ns); err != nil {
			return err
		}
	}
	d.log.Info("node proxies ready", "nodes", len(nodes), "hops", d.opts.Hops, "push_to_ack", d.mesh.Push)
	return nil
}

func (d *Datapath) steerNode(ctx context.Context, ns *nodeState) error {
	n := ns.node
	if n.CgroupPath == "" {
		return fmt.Errorf("node %s has no cgroup v2 directory: %w", n.Name, datapaths.ErrNotSupported)
	}
	objs, err := steer.Load(steer.Config{Proxy: netip.AddrPortFrom(n.Gateway, OutboundPort)})
	if err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	ns.objs = objs
	for _, p := range d.env.Cluster.Pods() {
		if p.NodeIndex != n.Index {
			continue
		}
		if p.CgroupPath == "" {
			return fmt.Errorf("pod %s has no cgroup v2 directory: %w", p.Name, datapaths.ErrNotSupported)
		}
		a, err := objs.AttachCgroup(p.CgroupPath)
		if err != nil {
			return err
		}
		ns.atts = append(ns.atts, a)
	}
	a, err := objs.AttachGetsockopt(n.CgroupPath)
	if err != nil {
		return err
	}
	ns.atts = append(ns.atts, a)
	if d.opts.Hops == HopsBoth {
		if _, err := datapaths.RunInNetns(ctx, n.NetnsPath, "", "iptables", inboundRule("-A", n)...); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		ns.rules = true
	}
	return nil
}

// inboundRule is the nat rule that captures traffic arriving from other
// nodes for this node's pods.
func inboundRule(op string, n *testbed.Node) []string {
	return []string{"-t", "nat", op, "PREROUTING", "-i", n.Uplink, "-p", "tcp",
		"-d", n.PodCIDR.String(), "-j", "REDIRECT", "--to-ports", strconv.Itoa(InboundPort)}
}

// waitReady waits until the node's proxy serves its counters.
func (d *Datapath) waitReady(ctx context.Context, ns *nodeState) error {
	return datapaths.WaitReady(ctx, "proxy on node "+ns.node.Name, ns.proc, ns.tail, func(ctx context.Context) error {
		_, err := proxy.ReadStats(ctx, ns.node.NetnsPath, proxy.DefaultAdminAddr)
		return err
	})
}

func (d *Datapath) exited() string {
	out := ""
	for _, ns := range d.nodes {
		if ns.proc != nil && ns.proc.Exited() {
			out += fmt.Sprintf("; proxy on node %s exited (%v): %s", ns.node.Name, ns.proc.Err(), ns.tail.String())
		}
	}
	return out
}

// Target implements datapaths.Datapath: the service's virtual address.
func (d *Datapath) Target(svc *datapaths.Service) []netip.AddrPort {
	return []netip.AddrPort{netip.AddrPortFrom(svc.VIP, uint16(svc.Port))}
}

// ProofSource implements datapaths.Datapath.
func (d *Datapath) ProofSource() string {
	return "node proxies' /stats and the steering BPF maps"
}

// Counters implements datapaths.Datapath: per node, the proxy's listener
// counters ("<node>/listener...") and the steering counters
// ("<node>/steer_..."); totals "outbound_rq", "inbound_rq" and
// "client_node_outbound_rq" (the client's node).
func (d *Datapath) Counters(ctx context.Context) (map[string]int64, error) {
	if d.env == nil {
		return nil, fmt.Errorf("datapath %s: not installed", Name)
	}
	out := map[string]int64{}
	for _, ns := range d.nodes {
		st, err := proxy.ReadStats(ctx, ns.node.NetnsPath, proxy.DefaultAdminAddr)
		if err != nil {
			return nil, fmt.Errorf("proxy on node %s: %w", ns.node.Name, err)
		}
		for k, v := range st.Flatten() {
			out[ns.node.Name+"/"+k] = v
		}
		o := st.Listeners[controlplane.OutboundListener]["rq_total"]
		out["outbound_rq"] += o
		out["inbound_rq"] += st.Listeners[controlplane.InboundListener]["rq_total"]
		if c := d.env.Client; c != nil && c.NodeIndex == ns.node.Index {
			out["client_node_outbound_rq"] = o
		}
		if ns.objs != nil {
			c, err := ns.objs.Counters()
			if err != nil {
				return nil, err
			}
			for k, v := range c {
				out[ns.node.Name+"/"+k] = int64(v)
				out[k] += int64(v)
			}
		}
	}
	return out, nil
}

// Verify implements datapaths.Datapath: the client node's proxy must have
// carried the successful requests; with both hops, the destination nodes'
// proxies must have received the share of them sent to pods on other nodes.
func (d *Datapath) Verify(delta map[string]int64, successes int64) (bool, string) {
	out, in := delta["client_node_outbound_rq"], delta["inbound_rq"]
	ok := successes > 0 && datapaths.WithinTolerance(out, successes)
	detail := fmt.Sprintf("client node's proxy carried %d requests; destination node proxies received %d; client counted %d successes; hops %s",
		out, in, successes, d.opts.Hops)
	if d.opts.Hops == HopsBoth {
		share := d.remoteShare()
		want := int64(float64(successes) * share)
		ok = ok && datapaths.WithinTolerance(in, want)
		detail += fmt.Sprintf(" (%.0f%% of backends on other nodes: want about %d inbound)", share*100, want)
	}
	return ok, detail
}

// remoteShare is the fraction of the loaded service's backends on nodes
// other than the client's (round-robin LB spreads requests evenly).
func (d *Datapath) remoteShare() float64 {
	svc := d.env.Load
	if svc == nil && len(d.env.Services) > 0 {
		svc = d.env.Services[0]
	}
	if svc == nil || len(svc.Backends) == 0 || d.env.Client == nil {
		return 0
	}
	remote := 0
	for _, b := range svc.Backends {
		if b.NodeIndex != d.env.Client.NodeIndex {
			remote++
		}
	}
	return float64(remote) / float64(len(svc.Backends))
}

// DatapathMetrics implements datapaths.MetricsReporter.
func (d *Datapath) DatapathMetrics() map[string]float64 {
	return d.mesh.Metrics()
}

// SetPodHealth implements datapaths.EndpointUpdater.
func (d *Datapath) SetPodHealth(ctx context.Context, pod string, healthy bool) error {
	if d.mesh == nil {
		return fmt.Errorf("datapath %s: %w", Name, controlplane.ErrNotRunning)
	}
	return d.mesh.SetPodHealth(ctx, pod, healthy)
}

// RestartProcess implements datapaths.ProcessRestarter: it starts the
// killed node proxy again and waits until it is configured.
func (d *Datapath) RestartProcess(ctx context.Context, killed *testbed.Process) error {
	for _, ns := range d.nodes {
		if ns.proc != killed {
			continue
		}
		proc, err := d.env.Cluster.StartOnNode(ctx, ns.node, ns.spec)
		if err != nil {
			return fmt.Errorf("restart proxy on node %s: %w", ns.node.Name, err)
		}
		ns.proc = proc
		return d.waitReady(ctx, ns)
	}
	return fmt.Errorf("process %s (pid %d) is not one of this datapath's node proxies", killed.Name, killed.PID)
}

// Uninstall implements datapaths.Datapath.
func (d *Datapath) Uninstall(ctx context.Context) error {
	var errs []error
	for _, ns := range d.nodes {
		for i := len(ns.atts) - 1; i >= 0; i-- {
			errs = append(errs, ns.atts[i].Close())
		}
		ns.atts = nil
		if ns.objs != nil {
			errs = append(errs, ns.objs.Close())
			ns.objs = nil
		}
		if ns.rules {
			if _, err := datapaths.RunInNetns(ctx, ns.node.NetnsPath, "", "iptables", inboundRule("-D", ns.node)...); err != nil {
				errs = append(errs, err)
			}
			ns.rules = false
		}
		if ns.proc != nil {
			if err := ns.proc.Stop(ctx); err != nil {
				errs = append(errs, err)
			}
		}
	}
	d.nodes = nil
	d.mesh.Stop()
	if d.runID != "" {
		if _, err := rundir.Remove(d.runID); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
