package sidecar

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/meshbench/meshbench/datapaths/fleet"

	"github.com/meshbench/meshbench/datapaths/catalog"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/datapaths/proxy"
	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/internal/rundir"
)

// Name is the datapath's name in scenarios and results.
const Name = catalog.Sidecar

// Options configure the datapath. Engines and mesh settings come from the
// scenario's services (datapaths.Service.Mesh).
type Options struct {
	// Name is the datapath's name; default "sidecar".
	Name string
	// Engine, when set, runs every sidecar on this engine ("builtin",
	// "envoy", "haproxy"), whatever the services' mesh.engine.
	Engine string
	// Rules are the iptables options; zero: DefaultRuleOptions.
	Rules RuleOptions
	// Steering, when set, carries the app↔sidecar hop instead of the
	// iptables OUTPUT rules (which are then left out): the sockmap
	// datapath.
	Steering Steering
	// EnvoyBinary is the Envoy binary for the envoy engine; "": envoy on
	// PATH. The proxies run a copy of it in the run directory, which uid
	// 1337 can reach.
	EnvoyBinary string
}

// Steering moves traffic between apps and their sidecars by other means than
// iptables, and proves it with its own counters.
type Steering interface {
	// Install sets steering up for pods, whose sidecars are running. On
	// error it removes what it set up.
	Install(ctx context.Context, pods []*testbed.Pod) error
	// Counters returns the steering's own counters (cumulative).
	Counters(ctx context.Context) (map[string]int64, error)
	// Verify holds the counter deltas of a window to the client's work,
	// as datapaths.Datapath's Verify does.
	Verify(delta map[string]int64, w datapaths.Work) []results.ProofCheck
	// Source names where the counters come from.
	Source() string
	// PodReplaced moves the steering of a deleted pod to its replacement
	// (pod, pointing at it now), whose previous cgroup was oldCgroup.
	PodReplaced(ctx context.Context, pod *testbed.Pod, oldCgroup string) error
	// BPFBytes returns the kernel memory of the steering's BPF programs
	// and maps (their memlock), and how many copies of them are loaded.
	BPFBytes() (bytes int64, copies int)
	// Uninstall removes everything Install set up; safe to call twice.
	Uninstall(ctx context.Context) error
}

// Datapath is the iptables sidecar datapath.
type Datapath struct {
	opts Options

	env     *datapaths.Env
	fleet   *fleet.Fleet
	proxies map[string]*sidecarProc // by pod name
	rules   []*testbed.Pod          // pods whose rules are installed
	engines map[string]int          // proxies per engine
	// pastIPs are the addresses pods had before they were replaced (chaos
	// pod-kill deleting them), by pod name: what the client's sidecar
	// sent to a pod is counted at all of them.
	pastIPs map[string][]netip.Addr
	// steering is set once Steering.Install has been called.
	steering bool
}

// sidecarProc is one pod's sidecar.
type sidecarProc struct {
	*fleet.Proxy
	engine string
	// ip and cgroup are the pod's when the sidecar started (a replaced
	// pod's change).
	ip     netip.Addr
	cgroup string
}

var (
	_ datapaths.Datapath            = (*Datapath)(nil)
	_ datapaths.FootprintReporter   = (*Datapath)(nil)
	_ datapaths.EngineNotesReporter = (*Datapath)(nil)
)

// New returns a sidecar datapath.
func New(opts Options) *Datapath {
	if opts.Name == "" {
		opts.Name = Name
	}
	if opts.Rules.OutboundPort == 0 {
		opts.Rules = DefaultRuleOptions()
	}
	if opts.Steering != nil {
		opts.Rules.InboundOnly = true
	}
	return &Datapath{opts: opts}
}

// Name implements datapaths.Datapath.
func (d *Datapath) Name() string { return d.opts.Name }

// Install implements datapaths.Datapath: it starts the control plane, then in
// every pod installs the nat rules and starts the proxy as uid 1337 in the
// pod's namespace and cgroup, and waits until every proxy has ACKed its
// configuration.
func (d *Datapath) Install(ctx context.Context, env *datapaths.Env) (err error) {
	d.env = env
	d.proxies = map[string]*sidecarProc{}
	d.engines = map[string]int{}
	defer datapaths.UndoOnError(ctx, &err, d.Uninstall)
	if d.fleet, err = fleet.Start(ctx, env, "sidecar", fleet.PerPod); err != nil {
		return err
	}
	pods := env.Cluster.Pods()
	// The proxies run as uid 1337, which may not be able to reach the
	// harness's own binary: they run a copy in the run directory.
	bin, err := rundir.CopyExecutable(env.Cluster.RunID(), env.Exec[0], "meshbench")
	if err != nil {
		return err
	}
	envoy := "" // the Envoy binary the proxies run, once copied
	for _, p := range pods {
		if err := applyRules(ctx, p.Netns(), d.opts.Rules); err != nil {
			return fmt.Errorf("install rules in pod %s: %w", p.Name, err)
		}
		d.rules = append(d.rules, p)
		engine, err := proxy.ResolveEngine(d.engineFor(p), d.opts.EnvoyBinary)
		if err != nil {
			return fmt.Errorf("sidecar of pod %s: %w", p.Name, err)
		}
		d.engines[engine]++
		args := append([]string{bin}, env.Exec[1:]...)
		args = append(args, "proxy",
			"--xds", d.fleet.SocketOn(p.NodeIndex),
			"--node-id", fleet.PerPod.NodeID(p.Name),
			"--engine", engine,
			"--config-dir", d.fleet.Dir,
			"--admin", proxy.DefaultAdminAddr,
			"--outbound-port", strconv.Itoa(d.opts.Rules.OutboundPort),
			"--inbound-port", strconv.Itoa(d.opts.Rules.InboundPort))
		switch engine {
		case proxy.EngineEnvoy:
			if envoy == "" {
				if envoy, err = d.envoyCopy(env.Cluster.RunID()); err != nil {
					return err
				}
			}
			args = append(args, "--envoy-binary", envoy)
		case proxy.EngineHAProxy:
			// The sidecar runs as uid 1337: haproxy's configuration,
			// ACL files and runtime socket go in a directory of its own.
			dir, err := proxyDir(d.fleet.Dir, p.Name)
			if err != nil {
				return err
			}
			args = replaceFlag(args, "--config-dir", dir)
		}
		sp := &sidecarProc{engine: engine, ip: p.IP, cgroup: p.CgroupPath}
		sp.Proxy = &fleet.Proxy{
			Pod:  p,
			Spec: testbed.ProcessSpec{Name: "sidecar", Role: results.RoleDatapath, Args: args, UID: ProxyUID, GID: ProxyGID},
			Ready: func(ctx context.Context) error {
				_, err := readCounters(ctx, sp)
				return err
			},
		}
		if err := d.fleet.Launch(ctx, sp.Proxy); err != nil {
			return err
		}
		d.proxies[p.Name] = sp
	}
	if err := d.fleet.WaitReady(ctx); err != nil {
		return err
	}
	if st := d.opts.Steering; st != nil {
		d.steering = true
		if err := st.Install(ctx, pods); err != nil {
			return fmt.Errorf("install %s: %w", st.Source(), err)
		}
	}
	if env.Logger != nil {
		env.Logger.Info("sidecars ready", "datapath", d.opts.Name, "pods", len(pods), "push_to_ack", d.fleet.Session.Push)
	}
	return nil
}

// proxyDir creates dir/proxy-<pod>, owned by the sidecar's uid, for an
// engine's files; it goes with the run directory.
func proxyDir(dir, pod string) (string, error) {
	d := filepath.Join(dir, "proxy-"+pod)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", err
	}
	if err := os.Chown(d, ProxyUID, ProxyGID); err != nil {
		return "", fmt.Errorf("give %s to the sidecar's uid %d: %w", d, ProxyUID, err)
	}
	return d, nil
}

// replaceFlag sets flag's value in args (flag value pairs), appending it
// when absent.
func replaceFlag(args []string, flag, value string) []string {
	for i := range args[:len(args)-1] {
		if args[i] == flag {
			args[i+1] = value
			return args
		}
	}
	return append(args, flag, value)
}

// envoyCopy copies the Envoy binary (the given one, or envoy on PATH) into
// the run directory, where uid 1337 can run it, and returns its path.
func (d *Datapath) envoyCopy(runID string) (string, error) {
	src, err := proxy.EnvoyAvailable(d.opts.EnvoyBinary)
	if err != nil {
		return "", err
	}
	return rundir.CopyExecutable(runID, src, "envoy")
}

// engineFor returns the scenario engine of the service pod backs, or of the
// first service for pods that back none (the client's).
func (d *Datapath) engineFor(pod *testbed.Pod) string {
	if d.opts.Engine != "" {
		return d.opts.Engine
	}
	for _, s := range d.env.Services {
		for _, b := range s.Backends {
			if b.Name == pod.Name {
				return s.Mesh.Engine
			}
		}
	}
	if len(d.env.Services) > 0 {
		return d.env.Services[0].Mesh.Engine
	}
	return "auto"
}

// DatapathMetrics implements datapaths.MetricsReporter: the control
// plane's push-to-ACK latency at install and the proxies per engine.
func (d *Datapath) DatapathMetrics() map[string]float64 {
	m := d.fleet.Metrics()
	for e, n := range d.engines {
		m["proxies_"+e] = float64(n)
	}
	return m
}

// EngineNotes implements datapaths.EngineNotesReporter: the notes of the
// sidecars' engine, over the sidecars, as last read by Counters.
func (d *Datapath) EngineNotes() []string { return d.fleet.Notes() }

// Footprint implements datapaths.FootprintReporter: a sidecar per pod,
// whose processes the harness measures (with their Envoy child, if any);
// and, with steering, the steering's BPF programs and maps, kernel memory
// no process shows, loaded once per node.
func (d *Datapath) Footprint() results.Footprint {
	fp := results.Footprint{Basis: "per pod: its sidecar (the wrapper with its Envoy child, if any); iptables rules, no BPF"}
	if st := d.opts.Steering; st != nil && d.steering {
		fp.Basis = "per pod: its sidecar (the wrapper with its Envoy child, if any); per node: the steering's BPF programs and maps (kernel memory)"
		fp.BPFBytes, fp.BPFCopies = st.BPFBytes()
	}
	return fp
}

// SetPodHealth implements datapaths.EndpointUpdater.
func (d *Datapath) SetPodHealth(ctx context.Context, pod string, healthy bool) error {
	if err := d.fleet.SetPodHealth(ctx, pod, healthy); err != nil {
		return fmt.Errorf("datapath %s: %w", d.opts.Name, err)
	}
	return nil
}

var _ datapaths.PodReplacer = (*Datapath)(nil)

// PodDeleted implements datapaths.PodReplacer: the pod's sidecar goes
// with it.
func (d *Datapath) PodDeleted(ctx context.Context, pod *testbed.Pod) error {
	if d.fleet == nil {
		return fmt.Errorf("datapath %s: not installed", d.opts.Name)
	}
	d.fleet.PodDeleted(pod)
	return nil
}

// PodReplaced implements datapaths.PodReplacer, as the sidecar injector
// and init container would in a new pod: the nat rules in the
// replacement's namespace, the endpoints' new address pushed to every
// proxy, the sidecar started in it (and waited for), then the steering
// moved to its cgroup.
func (d *Datapath) PodReplaced(ctx context.Context, pod *testbed.Pod) error {
	sp := d.proxies[pod.Name]
	if sp == nil {
		return fmt.Errorf("datapath %s: pod %s has no sidecar", d.opts.Name, pod.Name)
	}
	if err := applyRules(ctx, pod.Netns(), d.opts.Rules); err != nil {
		return fmt.Errorf("install rules in the replacement of pod %s: %w", pod.Name, err)
	}
	if err := d.fleet.PodReplaced(ctx, pod); err != nil {
		return fmt.Errorf("datapath %s: replacement of pod %s: %w", d.opts.Name, pod.Name, err)
	}
	if d.steering {
		if err := d.opts.Steering.PodReplaced(ctx, pod, sp.cgroup); err != nil {
			return fmt.Errorf("datapath %s: replacement of pod %s: %w", d.opts.Name, pod.Name, err)
		}
	}
	if sp.ip != pod.IP {
		if d.pastIPs == nil {
			d.pastIPs = map[string][]netip.Addr{}
		}
		d.pastIPs[pod.Name] = append(d.pastIPs[pod.Name], sp.ip)
	}
	sp.ip, sp.cgroup = pod.IP, pod.CgroupPath
	return nil
}

// RestartProcess implements datapaths.ProcessRestarter: it starts the
// sidecar of the killed one's pod again and waits until it is configured.
func (d *Datapath) RestartProcess(ctx context.Context, killed *testbed.Process) error {
	return d.fleet.Restart(ctx, killed)
}

// Target implements datapaths.Datapath: the service's virtual address, which
// the client's sidecar resolves.
func (d *Datapath) Target(svc *datapaths.Service) []netip.AddrPort {
	return []netip.AddrPort{netip.AddrPortFrom(svc.VIP, uint16(svc.Port))}
}

// ProofSource implements datapaths.Datapath.
func (d *Datapath) ProofSource() string {
	src := "sidecar proxies' /stats (per pod, per listener)"
	if d.opts.Steering != nil {
		src += " and " + d.opts.Steering.Source()
	}
	return src
}

// Counters implements datapaths.Datapath: every sidecar's counters, keyed
// "<pod>/<counter>"; the client's sidecar's outbound outcomes
// ("client_outbound_2xx", "client_outbound_error", "client_outbound_bytes_in",
// "client_outbound_bytes_out", "client_retries"); and for every other pod
// the hop counters of datapaths.Delivered (what its sidecar answered on its
// inbound listener, and what the client's sidecar sent it). The totals
// "outbound_rq" and "inbound_rq" are over all pods, and "sidecar_app_conns"
// counts the connections the sidecars opened to their own pods' apps.
func (d *Datapath) Counters(ctx context.Context) (map[string]int64, error) {
	if d.env == nil {
		return nil, fmt.Errorf("datapath %s: not installed", Name)
	}
	out := map[string]int64{}
	views := map[string]proxy.View{}
	readings, err := d.readAll(ctx)
	if err != nil {
		return nil, err
	}
	for name, rd := range readings {
		for k, val := range rd.Counters {
			out[name+"/"+k] = val
		}
		d.fleet.NoteEngine(name, rd)
		v := rd.View
		views[name] = v
		out["outbound_rq"] += v.Outbound.Rq
		out["inbound_rq"] += v.Inbound.Rq
		out["sidecar_app_conns"] += v.LocalConns
	}
	if c := d.env.Client; c != nil {
		cv := views[c.Name]
		out["client_outbound_rq"] = cv.Outbound.Rq
		out["client_outbound_2xx"] = cv.Outbound.Rq2xx
		out["client_outbound_error"] = cv.Outbound.RqError
		out["client_outbound_bytes_in"] = cv.Outbound.BytesIn
		out["client_outbound_bytes_out"] = cv.Outbound.BytesOut
		out["client_retries"] = cv.Retries
		for name, v := range views {
			if name == c.Name {
				continue
			}
			out[datapaths.HopReceived2xx+name] = v.Inbound.Rq2xx
			out[datapaths.HopReceivedBytes+name] = v.Inbound.BytesIn
			if cv.Sent != nil {
				for _, ip := range append([]netip.Addr{d.proxies[name].ip}, d.pastIPs[name]...) {
					sent := cv.Sent[ip]
					out[datapaths.HopSent2xx+name] += sent.Rq2xx
					out[datapaths.HopSentErr+name] += sent.RqError
					out[datapaths.HopSentBytes+name] += sent.BytesOut
				}
			}
		}
	}
	if d.steering {
		sc, err := d.opts.Steering.Counters(ctx)
		if err != nil {
			return nil, err
		}
		for k, v := range sc {
			out[k] = v
		}
	}
	return out, nil
}

// readCounters reads one sidecar's counters, flat, the proof's view of
// them and its engine's notes.
// readAll reads every sidecar's counters (datapaths.ReadAll: one after
// another, 512 sidecars took longer than the read after a step may).
func (d *Datapath) readAll(ctx context.Context) (map[string]proxy.Reading, error) {
	names := slices.Sorted(maps.Keys(d.proxies))
	rds, err := datapaths.ReadAll(ctx, names, func(ctx context.Context, name string) (proxy.Reading, error) {
		rd, err := readCounters(ctx, d.proxies[name])
		if err != nil {
			return rd, fmt.Errorf("sidecar of pod %s: %w", name, err)
		}
		return rd, nil
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]proxy.Reading, len(names))
	for i, name := range names {
		out[name] = rds[i]
	}
	return out, nil
}

func readCounters(ctx context.Context, sp *sidecarProc) (proxy.Reading, error) {
	return proxy.ReadCounters(ctx, sp.engine, sp.Pod.Netns(), proxy.DefaultAdminAddr)
}

// Verify implements datapaths.Datapath. HTTP: the client's sidecar answered
// the client's successes with 2xx and its HTTP errors with 4xx/5xx, and
// every backend's sidecar answered, on its inbound listener, what the
// client's sidecar sent it. TCP passthrough: the same with bytes. Then the
// steering's own checks, if any.
func (d *Datapath) Verify(delta map[string]int64, w datapaths.Work) []results.ProofCheck {
	var checks []results.ProofCheck
	if w.Protocol == "tcp" {
		checks = append(checks, datapaths.ClientBytes("client sidecar", delta["client_outbound_bytes_in"], delta["client_outbound_bytes_out"], w)...)
		checks = append(checks, datapaths.DeliveredBytes("backend sidecars", delta, w))
	} else {
		checks = append(checks, datapaths.Answered("client sidecar", delta["client_outbound_2xx"], delta["client_outbound_error"], w)...)
		checks = append(checks, datapaths.Delivered("backend sidecars", delta, delta["client_retries"], w))
	}
	if d.opts.Steering != nil {
		checks = append(checks, d.opts.Steering.Verify(delta, w)...)
	}
	return checks
}

// Uninstall implements datapaths.Datapath: it detaches the steering,
// removes the rules, and stops the proxies and the control plane.
func (d *Datapath) Uninstall(ctx context.Context) error {
	var errs []error
	if d.steering {
		errs = append(errs, d.opts.Steering.Uninstall(ctx))
		d.steering = false
	}
	for _, p := range d.rules {
		if err := deleteRules(ctx, p.Netns(), d.opts.Rules); err != nil {
			errs = append(errs, fmt.Errorf("remove rules in pod %s: %w", p.Name, err))
		}
	}
	d.rules = nil
	errs = append(errs, d.fleet.Stop(ctx))
	d.proxies = nil
	return errors.Join(errs...)
}
