package kube

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/meshbench/meshbench/harness/agent"
	"github.com/meshbench/meshbench/harness/agent/agentpb"
	"github.com/meshbench/meshbench/harness/metrics"
	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/internal/ports"
)

// ProviderOptions configure the kube provider.
type ProviderOptions struct {
	// Config, Kubeconfig and Context choose the cluster (see Options).
	Config     *rest.Config
	Kubeconfig string
	Context    string
	// Image is the meshbench image the pods and the agents run: a static
	// meshbench binary at /meshbench.
	Image Image
	// Log receives progress; default: discard.
	Log *slog.Logger
	// ReadyTimeout bounds the wait for the pods and agents. Default 3m.
	ReadyTimeout time.Duration
}

// Provider runs the testbed's pods on a Kubernetes cluster: each pod is a
// one-replica Deployment of the meshbench image running `meshbench pause`,
// pinned to its node, in the run's namespace meshbench-<run>; the node
// agent DaemonSet runs on the nodes used, and the harness reaches each
// agent by port-forward. Processes start in the pods through the agents,
// and counters and metrics are read through them.
type Provider struct {
	opts ProviderOptions
}

// NewProvider returns a kube provider.
func NewProvider(opts ProviderOptions) *Provider {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 3 * time.Minute
	}
	// client-go reports through klog, to stderr by default (for example a
	// port-forward's stream closing at teardown); route it to the log.
	klog.SetSlogLogger(opts.Log)
	return &Provider{opts: opts}
}

// Name implements testbed.Provider.
func (p *Provider) Name() string { return "kube" }

func (p *Provider) connect(ctx context.Context) (*Client, error) {
	return Connect(ctx, Options{Config: p.opts.Config, Kubeconfig: p.opts.Kubeconfig, Context: p.opts.Context, Log: p.opts.Log})
}

// Down implements testbed.Provider: it deletes the run's namespace (every
// run's when runID is ""), which holds everything the provider created.
func (p *Provider) Down(ctx context.Context, runID string) ([]string, error) {
	c, err := p.connect(ctx)
	if err != nil {
		return nil, err
	}
	return c.Down(ctx, runID)
}

// PauseArgs is the pods' container command: it sleeps until stopped, and
// the harness starts the pod's processes beside it through the agent.
var PauseArgs = []string{"/meshbench", "pause"}

// Create implements testbed.Provider.
func (p *Provider) Create(ctx context.Context, spec testbed.Spec) (_ testbed.Cluster, err error) {
	if spec.Nodes < 1 {
		return nil, errors.New("kube: at least one node")
	}
	c, err := p.connect(ctx)
	if err != nil {
		return nil, err
	}
	nsName := NamespaceName(spec.RunID)
	if err := c.CheckAccess(ctx, nsName); err != nil {
		return nil, err
	}
	nodes, err := c.schedulableNodes(ctx)
	if err != nil {
		return nil, err
	}
	if len(nodes) < spec.Nodes {
		names := make([]string, len(nodes))
		for i, n := range nodes {
			names[i] = n.Name
		}
		return nil, fmt.Errorf("kube: the scenario needs %d nodes; the cluster at %s has %d that are Ready, schedulable and not kwok's (%v)", spec.Nodes, c.Server(), len(nodes), names)
	}
	nodes = nodes[:spec.Nodes]
	ns, err := c.CreateNamespace(ctx, spec.RunID)
	if err != nil {
		return nil, err
	}
	cl := &cluster{c: c, ns: ns, runID: spec.RunID, byName: map[string]*testbed.Pod{}, uids: map[string]string{}, podNames: map[string]string{}}
	defer func() {
		if err != nil {
			if derr := cl.Destroy(context.WithoutCancel(ctx)); derr != nil {
				err = errors.Join(err, derr)
			}
		}
	}()
	var b [16]byte
	rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	hostnames := make([]string, len(nodes))
	for i, n := range nodes {
		hostnames[i] = n.Labels[corev1.LabelHostname]
		if hostnames[i] == "" {
			hostnames[i] = n.Name
		}
	}
	if err := ns.CreateAgent(ctx, p.opts.Image, token, hostnames...); err != nil {
		return nil, err
	}
	cl.serviceOf = map[string]string{}
	probes := map[string]*Probe{}
	for _, svc := range spec.Services {
		pr := kubeletProbe(svc.Readiness)
		for _, b := range svc.Backends {
			cl.serviceOf[b] = svc.Name
			probes[b] = pr
		}
	}
	apps := make([]App, 0, len(spec.Pods)+1)
	for _, ps := range spec.Pods {
		if ps.Node < 0 || ps.Node >= len(nodes) {
			return nil, fmt.Errorf("kube: pod %s on node %d of %d", ps.Name, ps.Node, len(nodes))
		}
		app := App{Name: ps.Name, Replicas: 1, Args: PauseArgs, Nodes: []string{hostnames[ps.Node]}}
		if svc := cl.serviceOf[ps.Name]; svc != "" {
			app.Labels = map[string]string{ServiceLabel: svc}
			// The kubelet probes the echo server the harness starts in
			// the pod later, on its admin port (which no datapath
			// captures), as the harness's own probe does.
			app.Readiness, app.ReadyLater = probes[ps.Name], true
			cl.probe = probes[ps.Name]
		}
		apps = append(apps, app)
	}
	if err := ns.Create(ctx, p.opts.Image, apps...); err != nil {
		return nil, err
	}
	cl.serviceAddrs = map[string]netip.Addr{}
	for _, svc := range spec.Services {
		if cl.serviceAddrs[svc.Name], err = ns.CreateService(ctx, svc.Name, int32(svc.Port)); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, p.opts.ReadyTimeout)
	infos, err := ns.WaitReady(wctx, append(apps, App{Name: AgentName, Replicas: int32(len(nodes))}), func(ready, want int) {
		p.opts.Log.Info("kube: pods ready", "ready", ready, "want", want)
	})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	p.opts.Log.Info("kube: pods and agents ready", "took", time.Since(start).Round(time.Millisecond))

	nodeIndex := map[string]int{}
	for i, n := range nodes {
		nodeIndex[n.Name] = i
		tn := &testbed.Node{Name: n.Name, Index: i}
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				tn.IP, _ = netip.ParseAddr(a.Address)
			}
		}
		tn.PodCIDR, _ = netip.ParsePrefix(n.Spec.PodCIDR)
		cl.nodes = append(cl.nodes, tn)
	}
	cl.fleet.Clients = make([]*agent.Client, len(nodes))
	cl.agentUIDs = make([]string, len(nodes))
	for _, info := range infos {
		if info.App != AgentName {
			continue
		}
		i, ok := nodeIndex[info.Node]
		if !ok {
			continue
		}
		addr, stop, err := ns.PortForward(ctx, info.Name, AgentPort)
		if err != nil {
			return nil, fmt.Errorf("kube: agent on node %s: %w", info.Node, err)
		}
		cl.stops = append(cl.stops, stop)
		client, err := agent.NewClient(addr, token)
		if err != nil {
			return nil, err
		}
		cl.fleet.Clients[i] = client
		// The node's namespace is the agent's own (hostNetwork): named by
		// the agent's pid, unique per node.
		h, err := client.API().Resolve(ctx, &agentpb.ResolveRequest{PodUid: info.UID})
		if err != nil {
			return nil, fmt.Errorf("kube: agent on node %s: resolve itself: %w", info.Node, err)
		}
		n := cl.nodes[i]
		n.NetnsPath, n.CgroupPath, n.Host = h.GetNetnsPath(), h.GetCgroupPath(), client
		cl.agentUIDs[i] = info.UID
		// Pods reach their node at its address: the per-node proxy's.
		n.Gateway = n.IP
		if n.Uplink, err = interfaceOf(ctx, n); err != nil {
			return nil, fmt.Errorf("kube: node %s: %w", n.Name, err)
		}
	}
	for i, n := range cl.nodes {
		if n.Host == nil {
			return nil, fmt.Errorf("kube: no agent became ready on node %s", nodes[i].Name)
		}
	}
	byApp := map[string]PodInfo{}
	for _, info := range infos {
		byApp[info.App] = info
	}
	for _, ps := range spec.Pods {
		info := byApp[ps.Name]
		n := cl.nodes[ps.Node]
		if info.Node != n.Name {
			return nil, fmt.Errorf("kube: pod %s runs on %s, not on node %s", info.Name, info.Node, n.Name)
		}
		h, err := n.Host.(*agent.Client).API().Resolve(ctx, &agentpb.ResolveRequest{PodUid: info.UID})
		if err != nil {
			return nil, fmt.Errorf("kube: resolve pod %s on node %s: %w", info.Name, n.Name, err)
		}
		pod := &testbed.Pod{
			Name: ps.Name, Node: n.Name, NodeIndex: ps.Node,
			MAC: h.GetMac(), NetnsPath: h.GetNetnsPath(), CgroupPath: h.GetCgroupPath(), MemoryCgroupPath: h.GetMemoryCgroupPath(),
			HostVeth: h.GetHostVeth(), PodVeth: h.GetPodVeth(), HostVethMAC: h.GetHostVethMac(), Host: n.Host,
		}
		if pod.IP, err = netip.ParseAddr(info.IP); err != nil {
			return nil, fmt.Errorf("kube: pod %s: IP %q: %w", info.Name, info.IP, err)
		}
		cl.pods = append(cl.pods, pod)
		cl.byName[pod.Name] = pod
		cl.uids[pod.Name] = info.UID
		cl.podNames[pod.Name] = info.Name
	}
	return cl, nil
}

// kubeletProbe is the kubelet's probe of a service's backends: an HTTP GET
// of the echo server's /healthz on its admin port, with the scenario's
// timing (Kubernetes rounds it up to whole seconds).
func kubeletProbe(p *testbed.Probe) *Probe {
	if p == nil {
		p = &testbed.Probe{Period: time.Second, Timeout: time.Second, FailureThreshold: 1, SuccessThreshold: 1}
	}
	return &Probe{Period: p.Period, Timeout: p.Timeout, FailureThreshold: int32(max(p.FailureThreshold, 1)),
		SuccessThreshold: int32(max(p.SuccessThreshold, 1)), Port: ports.EchoAdmin, Path: "/healthz"}
}

// schedulableNodes lists the nodes that can run the run's pods: Ready, not
// cordoned, without a NoSchedule or NoExecute taint, and not kwok's fake
// ones (they run no containers), sorted by name.
func (c *Client) schedulableNodes(ctx context.Context) ([]corev1.Node, error) {
	list, err := c.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	var out []corev1.Node
	for _, n := range list.Items {
		if n.Spec.Unschedulable || n.Annotations["kwok.x-k8s.io/node"] == "fake" {
			continue
		}
		if slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool {
			return t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute
		}) {
			continue
		}
		if !slices.ContainsFunc(n.Status.Conditions, func(c corev1.NodeCondition) bool {
			return c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue
		}) {
			continue
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// cluster is a run's pods on a Kubernetes cluster.
type cluster struct {
	c      *Client
	ns     *Namespace
	runID  string
	nodes  []*testbed.Node
	pods   []*testbed.Pod
	byName map[string]*testbed.Pod
	// serviceOf is the service a backend serves, by testbed pod name.
	serviceOf map[string]string
	// probe is the kubelet's readiness probe of the backends.
	probe *Probe
	// agentUIDs are the agents' pods' UIDs, by node index: per-node
	// processes run in the agent's pod.
	agentUIDs []string
	fleet     agent.Fleet
	stops     []func()
	// serviceAddrs are the Services' cluster IPs.
	serviceAddrs map[string]netip.Addr

	mu sync.Mutex
	// uids and podNames are the Kubernetes pods' UIDs and names (the
	// Deployments' pods; a deleted pod's replacement once resolved), by
	// testbed pod name.
	uids, podNames map[string]string
	destroyed      bool
}

func (cl *cluster) RunID() string                { return cl.runID }
func (cl *cluster) Nodes() []*testbed.Node       { return cl.nodes }
func (cl *cluster) Pods() []*testbed.Pod         { return cl.pods }
func (cl *cluster) Pod(name string) *testbed.Pod { return cl.byName[name] }

// Namespaces returns the pods' and nodes' network namespaces (paths on
// their nodes).
func (cl *cluster) Namespaces() []string {
	var out []string
	for _, n := range cl.nodes {
		out = append(out, n.NetnsPath)
	}
	for _, p := range cl.pods {
		out = append(out, p.NetnsPath)
	}
	return out
}

// Start implements testbed.Cluster: the pod's node agent starts the
// meshbench of the image with spec.Args[1:] (spec.Args[0], the harness's
// own path, means nothing on the node) in the pod's network namespace and
// a cgroup beside its containers'.
func (cl *cluster) Start(ctx context.Context, pod *testbed.Pod, spec testbed.ProcessSpec) (*testbed.Process, error) {
	if pod == nil || cl.byName[pod.Name] != pod {
		return nil, fmt.Errorf("start %s: pod not in run %s", spec.Name, cl.runID)
	}
	_, uid := cl.kubePod(pod.Name)
	return cl.fleet.Start(ctx, pod.NodeIndex, pod.Node, pod.Name, &agentpb.StartRequest{PodUid: uid}, spec)
}

// kubePod returns the name and UID of the Kubernetes pod that is testbed
// pod name now (a deleted pod's replacement after AwaitReplacement).
func (cl *cluster) kubePod(name string) (kname, uid string) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.podNames[name], cl.uids[name]
}

// StartOnNode implements testbed.Cluster: the node's agent starts the
// process in its own pod, as a per-node proxy runs in a DaemonSet's pod:
// in the node's network namespace (hostNetwork) and a cgroup beside the
// agent's container, which Node.CgroupPath (the agent pod's) holds.
func (cl *cluster) StartOnNode(ctx context.Context, node *testbed.Node, spec testbed.ProcessSpec) (*testbed.Process, error) {
	if node == nil || node.Index < 0 || node.Index >= len(cl.nodes) || cl.nodes[node.Index] != node {
		return nil, fmt.Errorf("start %s: node not in run %s", spec.Name, cl.runID)
	}
	return cl.fleet.Start(ctx, node.Index, node.Name, "", &agentpb.StartRequest{PodUid: cl.agentUIDs[node.Index]}, spec)
}

// interfaceOf finds the interface that holds the node's address, in the
// node's namespace, through its agent.
func interfaceOf(ctx context.Context, n *testbed.Node) (string, error) {
	out, err := n.Netns().Exec(ctx, []string{"ip", "-o", "-4", "addr", "show"}, "")
	if err != nil {
		return "", err
	}
	return parseInterfaceOf(out, n.IP)
}

// parseInterfaceOf reads `ip -o -4 addr show` ("2: eth0    inet
// 198.19.1.1/24 brd ...") for the interface holding addr.
func parseInterfaceOf(out string, addr netip.Addr) (string, error) {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[2] != "inet" {
			continue
		}
		if p, err := netip.ParsePrefix(f[3]); err == nil && p.Addr() == addr {
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			return name, nil
		}
	}
	return "", fmt.Errorf("no interface holds the node's address %s", addr)
}

func (cl *cluster) Processes() []*testbed.Process { return cl.fleet.Processes() }

// Expose implements testbed.Exposer: each node's agent listens at
// /run/meshbench/<run>/<socket's name> in its own filesystem, where the
// processes it starts look.
func (cl *cluster) Expose(ctx context.Context, socket string) ([]string, func(), error) {
	paths := make([]string, len(cl.nodes))
	for i := range paths {
		paths[i] = path.Join("/run/meshbench", cl.runID, filepath.Base(socket))
	}
	stop, err := cl.fleet.Expose(ctx, socket, paths)
	return paths, stop, err
}

// ServiceAddr implements testbed.ServiceAddresser: the Service's cluster
// IP.
func (cl *cluster) ServiceAddr(name string) (netip.Addr, bool) {
	a, ok := cl.serviceAddrs[name]
	return a, ok
}

// Snapshot reads processes and namespaces through the agents of their
// nodes (the harness's runner uses it instead of reading its own host).
func (cl *cluster) Snapshot(ctx context.Context, pids []int, netns []string) (*metrics.Snapshot, error) {
	return cl.fleet.Snapshot(ctx, cl.nodes, cl.pods, cl.Processes(), -1, pids, netns)
}

// Destroy stops the processes started through the agents, ends the
// port-forwards and deletes the run's namespace, waiting until it is gone.
func (cl *cluster) Destroy(ctx context.Context) error {
	cl.mu.Lock()
	if cl.destroyed {
		cl.mu.Unlock()
		return nil
	}
	cl.destroyed = true
	cl.mu.Unlock()
	start := time.Now()
	errs := []error{cl.fleet.Stop(ctx)}
	for _, stop := range cl.stops {
		stop()
	}
	cl.c.log.Debug("run's processes stopped", "took", time.Since(start).Round(time.Millisecond))
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	errs = append(errs, cl.ns.Delete(dctx))
	return errors.Join(errs...)
}

// Describe implements testbed.Describer: the server's version, and for
// each node the run used its Node object's system info and capacity and
// what its agent sees of kube-proxy and CNI.
func (cl *cluster) Describe(ctx context.Context) (*results.Cluster, error) {
	out := &results.Cluster{KubernetesVersion: cl.c.Version()}
	list, err := cl.c.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{}) // list: the permission the run asks for
	if err != nil {
		return nil, fmt.Errorf("describe nodes: %w", err)
	}
	for i, n := range cl.nodes {
		var obj *corev1.Node
		for j := range list.Items {
			if list.Items[j].Name == n.Name {
				obj = &list.Items[j]
			}
		}
		if obj == nil {
			return nil, fmt.Errorf("describe node %s: not in the cluster any more", n.Name)
		}
		ni := obj.Status.NodeInfo
		cn := results.ClusterNode{
			Name: n.Name, Kernel: ni.KernelVersion, OSImage: ni.OSImage,
			ContainerRuntime: ni.ContainerRuntimeVersion, Kubelet: ni.KubeletVersion,
			CPUs: obj.Status.Capacity.Cpu().Value(), MemoryMiB: obj.Status.Capacity.Memory().Value() >> 20,
		}
		info, err := cl.fleet.Clients[i].API().NodeInfo(ctx, &agentpb.NodeInfoRequest{})
		if err != nil {
			return nil, fmt.Errorf("describe node %s through its agent: %w", n.Name, err)
		}
		cn.KubeProxyMode, cn.CNIConfig, cn.CNIPlugins = info.GetKubeProxyMode(), info.GetCniConfig(), info.GetCniPlugins()
		out.Nodes = append(out.Nodes, cn)
	}
	return out, nil
}

var _ testbed.ReadinessWatcher = (*cluster)(nil)

// ReadinessSource implements testbed.ReadinessWatcher.
func (cl *cluster) ReadinessSource() string {
	p := cl.probe
	if p == nil {
		return "kubelet readiness probes, via EndpointSlices"
	}
	return fmt.Sprintf("kubelet readiness probe (HTTP GET %s on port %d every %ds, timeout %ds, failure threshold %d, success threshold %d), via EndpointSlices",
		p.Path, p.Port, seconds(p.Period), seconds(p.Timeout), p.FailureThreshold, p.SuccessThreshold)
}

// WatchReady implements testbed.ReadinessWatcher: it follows the
// EndpointSlices of the pod's Service (a pod not in them counts as not
// ready).
func (cl *cluster) WatchReady(ctx context.Context, pod *testbed.Pod, fn func(ready bool)) (func(), bool, error) {
	svc := cl.serviceOf[pod.Name]
	if svc == "" || cl.byName[pod.Name] != pod {
		return nil, false, nil
	}
	// The watch outlives ctx (it runs until stop), but its setup (the
	// first list and sync) must not: the caller's end cancels it until
	// then.
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stopSetup := context.AfterFunc(ctx, cancel)
	defer stopSetup()
	var mu sync.Mutex
	last, first := false, true
	err := cl.ns.WatchEndpoints(wctx, svc, func(eps []Endpoint) {
		// The pod's Kubernetes name now: a deleted pod's replacement has
		// another.
		name, _ := cl.kubePod(pod.Name)
		ready := false
		for _, e := range eps {
			if e.Pod == name {
				ready = e.Ready
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if first || ready != last {
			first, last = false, ready
			fn(ready)
		}
	})
	if err != nil {
		cancel()
		return nil, true, err
	}
	return cancel, true, nil
}

// WaitServing implements testbed.ReadinessWatcher: it waits until every
// pod of pods that serves a Service is a ready endpoint of it, with one
// EndpointSlice watch per Service.
func (cl *cluster) WaitServing(ctx context.Context, pods []*testbed.Pod) error {
	want := map[string]map[string]bool{} // service → its pods' Kubernetes names
	for _, p := range pods {
		svc := cl.serviceOf[p.Name]
		if svc == "" || cl.byName[p.Name] != p {
			continue
		}
		if want[svc] == nil {
			want[svc] = map[string]bool{}
		}
		name, _ := cl.kubePod(p.Name)
		want[svc][name] = true
	}
	for svc, names := range want {
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		var once sync.Once
		err := cl.ns.WatchEndpoints(wctx, svc, func(eps []Endpoint) {
			ready := 0
			for _, e := range eps {
				if e.Ready && names[e.Pod] {
					ready++
				}
			}
			if ready == len(names) {
				once.Do(func() { close(done) })
			}
		})
		if err == nil {
			select {
			case <-done:
			case <-ctx.Done():
				err = fmt.Errorf("kube: pods %v not all ready endpoints of service %s: %w", slices.Sorted(maps.Keys(names)), svc, ctx.Err())
			}
		}
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}
