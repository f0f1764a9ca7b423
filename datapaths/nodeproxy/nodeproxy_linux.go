package nodeproxy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/meshbench/meshbench/datapaths/fleet"

	"github.com/meshbench/meshbench/internal/iptables"

	"github.com/meshbench/meshbench/bpf/attach"
	"github.com/meshbench/meshbench/bpf/steer"
	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/datapaths/proxy"
	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed"
)

// Datapath is the eBPF-steered per-node proxy datapath.
type Datapath struct {
	opts Options

	env   *datapaths.Env
	fleet *fleet.Fleet
	nodes []*nodeState
	// engine is the proxies' engine, "builtin" or "envoy".
	engine string
	// cgroups are the cgroups the steering attached to, by pod name.
	cgroups map[string]string
}

// nodeState is what the datapath set up on one node.
type nodeState struct {
	*fleet.Proxy
	steer attach.Set
	rules bool
}

var (
	_ datapaths.Datapath            = (*Datapath)(nil)
	_ datapaths.FootprintReporter   = (*Datapath)(nil)
	_ datapaths.EngineNotesReporter = (*Datapath)(nil)
)

// New returns the nodeproxy datapath.
func New(opts Options) *Datapath {
	if opts.Hops == "" {
		opts.Hops = HopsBoth
	}
	return &Datapath{opts: opts}
}

// Name implements datapaths.Datapath.
func (d *Datapath) Name() string {
	if d.opts.Name != "" {
		return d.opts.Name
	}
	return Name
}

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
	if d.opts.Engine != "" {
		d.engine, err = proxy.ResolveEngine(d.opts.Engine, d.opts.EnvoyBinary)
	} else {
		d.engine, err = Engine(env.Services, d.opts.EnvoyBinary)
	}
	if err != nil {
		return err
	}
	defer datapaths.UndoOnError(ctx, &err, d.Uninstall)
	if d.fleet, err = fleet.Start(ctx, env, "node proxy", fleet.PerNode); err != nil {
		return err
	}
	envoy := ""
	if d.engine == proxy.EngineEnvoy {
		if envoy, err = proxy.EnvoyAvailable(d.opts.EnvoyBinary); err != nil {
			return err
		}
	}
	nodes := env.Cluster.Nodes()
	for _, n := range nodes {
		ns := &nodeState{Proxy: &fleet.Proxy{
			Node: n,
			Spec: testbed.ProcessSpec{Name: "nodeproxy", Role: results.RoleDatapath, Args: proxyArgs(env.Exec, d.fleet, n, d.engine, envoy)},
			Ready: func(ctx context.Context) error {
				_, err := proxy.ReadCounters(ctx, d.engine, n.Netns(), proxy.DefaultAdminAddr)
				return err
			},
		}}
		if err := d.fleet.Launch(ctx, ns.Proxy); err != nil {
			return err
		}
		d.nodes = append(d.nodes, ns)
	}
	if err := d.fleet.WaitReady(ctx); err != nil {
		return err
	}
	// Steering: the node proxies are up, so connects can be rewritten.
	for _, ns := range d.nodes {
		if err := d.steerNode(ctx, ns); err != nil {
			return err
		}
	}
	if env.Logger != nil {
		env.Logger.Info("node proxies ready", "nodes", len(nodes), "engine", d.engine, "hops", d.opts.Hops, "push_to_ack", d.fleet.Session.Push)
	}
	return nil
}

func (d *Datapath) steerNode(ctx context.Context, ns *nodeState) error {
	n := ns.Node
	if n.CgroupPath == "" {
		return fmt.Errorf("node %s has no cgroup v2 directory: %w", n.Name, datapaths.ErrNotSupported)
	}
	spec := attach.Spec{
		Steer:      &steer.Config{Proxy: netip.AddrPortFrom(n.Gateway, OutboundPort)},
		Getsockopt: []string{n.CgroupPath},
	}
	for _, p := range d.env.Cluster.Pods() {
		if p.NodeIndex != n.Index {
			continue
		}
		if p.CgroupPath == "" {
			return fmt.Errorf("pod %s has no cgroup v2 directory: %w", p.Name, datapaths.ErrNotSupported)
		}
		spec.Cgroups = append(spec.Cgroups, p.CgroupPath)
		if d.cgroups == nil {
			d.cgroups = map[string]string{}
		}
		d.cgroups[p.Name] = p.CgroupPath
	}
	set, err := attach.For(n.Host).AttachBPF(ctx, spec)
	if err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	ns.steer = set
	if d.opts.Hops == HopsBoth {
		// The rule redirects traffic for the node's pod range: never
		// hand iptables a range outside the testbed's.
		if c := n.PodCIDR; !c.IsValid() || c.Bits() < attach.Meshed.Bits() || !attach.Meshed.Contains(c.Addr()) {
			return fmt.Errorf("node %s: pod range %s is outside %s, where meshbench may redirect traffic", n.Name, c, attach.Meshed)
		}
		if err := iptables.Run(ctx, n.Netns(), inboundRule("-A", n, d.env.Cluster.RunID())...); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		ns.rules = true
	}
	return nil
}

// inboundRule is the nat rule that captures traffic arriving from other
// nodes for this node's pods. It is tagged with the run (a node agent
// removes its run's rules when it stops, should the harness not).
func inboundRule(op string, n *testbed.Node, runID string) []string {
	return []string{"-t", "nat", op, "PREROUTING", "-i", n.Uplink, "-p", "tcp",
		"-d", n.PodCIDR.String(), "-m", "comment", "--comment", iptables.NodeComment(runID),
		"-j", "REDIRECT", "--to-ports", strconv.Itoa(InboundPort)}
}

// Target implements datapaths.Datapath: the service's virtual address.
func (d *Datapath) Target(svc *datapaths.Service) []netip.AddrPort {
	return []netip.AddrPort{netip.AddrPortFrom(svc.VIP, uint16(svc.Port))}
}

// ProofSource implements datapaths.Datapath.
func (d *Datapath) ProofSource() string {
	return "node proxies' /stats and the steering BPF maps"
}

// Counters implements datapaths.Datapath: per node, the proxy's counters
// ("<node>/listener...", "<node>/host...") and the steering counters
// ("<node>/steer_..."), with the steering totals over nodes; the client
// node's proxy's outbound outcomes ("client_outbound_2xx",
// "client_outbound_error", "client_outbound_bytes_in",
// "client_outbound_bytes_out", "client_retries") and its connect4 rewrites
// ("client_steer_rewrites"); and for every other node the hop counters of
// datapaths.Delivered: what its proxy answered on its inbound listener,
// and what the client node's proxy sent to pods on it. "outbound_rq" and
// "inbound_rq" are totals over nodes.
func (d *Datapath) Counters(ctx context.Context) (map[string]int64, error) {
	if d.env == nil {
		return nil, fmt.Errorf("datapath %s: not installed", Name)
	}
	out := map[string]int64{}
	views := make([]proxy.View, len(d.nodes))
	var client *nodeState
	for i, ns := range d.nodes {
		rd, err := proxy.ReadCounters(ctx, d.engine, ns.Node.Netns(), proxy.DefaultAdminAddr)
		if err != nil {
			return nil, fmt.Errorf("proxy on node %s: %w", ns.Node.Name, err)
		}
		for k, val := range rd.Counters {
			out[ns.Node.Name+"/"+k] = val
		}
		d.fleet.NoteEngine(ns.Node.Name, rd)
		views[i] = rd.View
		out["outbound_rq"] += views[i].Outbound.Rq
		out["inbound_rq"] += views[i].Inbound.Rq
		if c := d.env.Client; c != nil && c.NodeIndex == ns.Node.Index {
			client = ns
		}
		if ns.steer != nil {
			c, err := ns.steer.Counters(ctx)
			if err != nil {
				return nil, err
			}
			for k, v := range c {
				out[ns.Node.Name+"/"+k] = int64(v)
				out[k] += int64(v)
			}
			if client == ns {
				out["client_steer_rewrites"] = int64(c["steer_rewrites"])
			}
		}
	}
	if client == nil {
		return out, nil
	}
	var cv proxy.View
	for i, ns := range d.nodes {
		if ns == client {
			cv = views[i]
		}
	}
	out["client_outbound_rq"] = cv.Outbound.Rq
	out["client_outbound_2xx"] = cv.Outbound.Rq2xx
	out["client_outbound_error"] = cv.Outbound.RqError
	out["client_outbound_bytes_in"] = cv.Outbound.BytesIn
	out["client_outbound_bytes_out"] = cv.Outbound.BytesOut
	out["client_retries"] = cv.Retries
	for ip, o := range cv.Sent {
		if client.Node.PodCIDR.Contains(ip) {
			out["client_sent_local_2xx"] += o.Rq2xx
		}
	}
	for i, ns := range d.nodes {
		if ns == client {
			continue
		}
		n := ns.Node.Name
		out[datapaths.HopReceived2xx+n] = views[i].Inbound.Rq2xx
		out[datapaths.HopReceivedBytes+n] = views[i].Inbound.BytesIn
		if cv.Sent == nil {
			continue // Envoy: no per-endpoint counts; the receivers are held together
		}
		var sent proxy.Outcomes
		for ip, o := range cv.Sent {
			if ns.Node.PodCIDR.Contains(ip) {
				sent.Rq2xx += o.Rq2xx
				sent.RqError += o.RqError
				sent.BytesOut += o.BytesOut
			}
		}
		out[datapaths.HopSent2xx+n] = sent.Rq2xx
		out[datapaths.HopSentErr+n] = sent.RqError
		out[datapaths.HopSentBytes+n] = sent.BytesOut
	}
	return out, nil
}

// Verify implements datapaths.Datapath. The client node's proxy answered
// the client's successes with 2xx and its HTTP errors with 4xx/5xx (with
// TCP passthrough: carried its bytes both ways); with both hops, every
// other node's proxy answered on its inbound listener what the client
// node's proxy sent to pods on that node, exactly however the load was
// balanced; with the source hop only, no node proxy received anything
// inbound; on a single node, nothing was received inbound and the client
// node's proxy delivered the successes to its pods itself; and connect4
// steered every connection the client opened.
func (d *Datapath) Verify(delta map[string]int64, w datapaths.Work) []results.ProofCheck {
	var checks []results.ProofCheck
	tcp := w.Protocol == "tcp"
	if tcp {
		checks = append(checks, datapaths.ClientBytes("client node's proxy", delta["client_outbound_bytes_in"], delta["client_outbound_bytes_out"], w)...)
	} else {
		checks = append(checks, datapaths.Answered("client node's proxy", delta["client_outbound_2xx"], delta["client_outbound_error"], w)...)
	}
	switch {
	case len(d.nodes) == 1:
		checks = append(checks, datapaths.Within("no node proxy received anything inbound (one node)", delta["inbound_rq"], 0, 0,
			fmt.Sprintf("%d inbound", delta["inbound_rq"]), "exact: on one node the client node's proxy delivers to the pods itself; there is no destination node"))
		if !tcp && d.engine != proxy.EngineEnvoy {
			checks = append(checks, datapaths.Near("the client node's proxy delivered the successes to its node's pods", delta["client_sent_local_2xx"], w.Successes, w.Slack,
				datapaths.PerSuccess(delta["client_sent_local_2xx"], w, "2xx/req to local pods"), "± the window-edge slack ("+w.SlackWhy+")"))
		}
	case d.opts.Hops == HopsSource:
		checks = append(checks, datapaths.Within("no node proxy received anything inbound (hops: source)", delta["inbound_rq"], 0, 0,
			fmt.Sprintf("%d inbound", delta["inbound_rq"]), "exact: with the source hop only, the client node's proxy delivers to the pods itself"))
	case tcp:
		checks = append(checks, datapaths.DeliveredBytes("destination node proxies", delta, w))
	default:
		checks = append(checks, datapaths.Delivered("destination node proxies", delta, delta["client_retries"], w))
	}
	checks = append(checks, datapaths.Near("connect4 steered every connection the client opened", delta["client_steer_rewrites"], w.ConnsOpened, w.Slack,
		fmt.Sprintf("connect4 %d/%d new conns", delta["client_steer_rewrites"], w.ConnsOpened),
		"± the window-edge slack ("+w.SlackWhy+"): a connection opened on an edge"))
	return checks
}

// DatapathMetrics implements datapaths.MetricsReporter: the control
// plane's push-to-ACK latency at install and the proxies per engine.
func (d *Datapath) DatapathMetrics() map[string]float64 {
	m := d.fleet.Metrics()
	m["proxies_"+d.engine] = float64(len(d.nodes))
	return m
}

// EngineNotes implements datapaths.EngineNotesReporter: the notes of the
// node proxies' engine, over the nodes, as last read by Counters.
func (d *Datapath) EngineNotes() []string { return d.fleet.Notes() }

// Footprint implements datapaths.FootprintReporter: a proxy per node,
// whose process the harness measures (with its Envoy child, if any), and
// each node's steering programs and maps, kernel memory no process shows
// (mostly two preallocated LRU maps of original destinations).
func (d *Datapath) Footprint() results.Footprint {
	fp := results.Footprint{Basis: "per node: its proxy (the wrapper with its Envoy child, if any) as measured serving this testbed's pods, and its connect4/getsockopt steering programs and maps (kernel memory)"}
	for _, ns := range d.nodes {
		if ns.steer != nil {
			fp.BPFBytes += ns.steer.MemlockBytes()
			fp.BPFCopies++
		}
	}
	return fp
}

// SetPodHealth implements datapaths.EndpointUpdater.
func (d *Datapath) SetPodHealth(ctx context.Context, pod string, healthy bool) error {
	if err := d.fleet.SetPodHealth(ctx, pod, healthy); err != nil {
		return fmt.Errorf("datapath %s: %w", Name, err)
	}
	return nil
}

var _ datapaths.PodReplacer = (*Datapath)(nil)

// PodDeleted implements datapaths.PodReplacer: nothing of the datapath
// goes with a pod (its node's proxy serves on).
func (d *Datapath) PodDeleted(context.Context, *testbed.Pod) error { return nil }

// PodReplaced implements datapaths.PodReplacer: the endpoints' new
// address is pushed to the node proxies, and the node's steering attaches
// to the replacement's cgroup and leaves the deleted pod's.
func (d *Datapath) PodReplaced(ctx context.Context, pod *testbed.Pod) error {
	if err := d.fleet.PodReplaced(ctx, pod); err != nil {
		return fmt.Errorf("datapath %s: replacement of pod %s: %w", Name, pod.Name, err)
	}
	if pod.NodeIndex < 0 || pod.NodeIndex >= len(d.nodes) || d.nodes[pod.NodeIndex].steer == nil {
		return fmt.Errorf("datapath %s: no steering on the node of pod %s", Name, pod.Name)
	}
	if pod.CgroupPath == "" {
		return fmt.Errorf("replacement of pod %s has no cgroup v2 directory: %w", pod.Name, datapaths.ErrNotSupported)
	}
	if err := d.nodes[pod.NodeIndex].steer.Update(ctx, []string{pod.CgroupPath}, []string{d.cgroups[pod.Name]}); err != nil {
		return fmt.Errorf("datapath %s: steer the replacement of pod %s: %w", Name, pod.Name, err)
	}
	d.cgroups[pod.Name] = pod.CgroupPath
	return nil
}

// RestartProcess implements datapaths.ProcessRestarter: it starts the
// killed node proxy again and waits until it is configured.
func (d *Datapath) RestartProcess(ctx context.Context, killed *testbed.Process) error {
	return d.fleet.Restart(ctx, killed)
}

// Uninstall implements datapaths.Datapath: it detaches the steering,
// removes the inbound rules, and stops the proxies and the control plane.
func (d *Datapath) Uninstall(ctx context.Context) error {
	var errs []error
	for _, ns := range d.nodes {
		if ns.steer != nil {
			errs = append(errs, ns.steer.Close(ctx))
			ns.steer = nil
		}
		if ns.rules {
			if err := iptables.Run(ctx, ns.Node.Netns(), inboundRule("-D", ns.Node, d.env.Cluster.RunID())...); err != nil {
				errs = append(errs, err)
			}
			ns.rules = false
		}
	}
	d.nodes = nil
	errs = append(errs, d.fleet.Stop(ctx))
	return errors.Join(errs...)
}
