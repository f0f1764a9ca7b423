package kind

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kindcluster "sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"

	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/harness/testbed/kube"
)

// ProviderOptions configure the kind provider.
type ProviderOptions struct {
	// Binary is the static meshbench packed into the image the pods and
	// the node agents run (the command line passes meshbench, the lean
	// binary).
	Binary string
	// NodeImage is every node's image; default: kind's
	// (kindest/node:v1.37.0 for kind v0.33.0).
	NodeImage string
	// Retain keeps the kind cluster, its docker network and its
	// kubeconfig when the cluster is destroyed (the run's namespace still
	// goes), for inspection; later Creates of the same run reuse it.
	// `meshbench down --provider kind` removes it.
	Retain bool
	// Log receives progress; default: discard.
	Log *slog.Logger
	// ReadyTimeout bounds the wait for every node to be Ready once kind
	// has created the cluster. Default 5m.
	ReadyTimeout time.Duration
}

// Provider creates a kind cluster (Kubernetes nodes as Docker containers)
// for each cluster of a run, on a docker network of its own inside the
// address plan, loads the meshbench image into its nodes, and runs the
// kube provider on it.
type Provider struct {
	opts ProviderOptions
	kind *kindcluster.Provider

	mu sync.Mutex
	// kept are the clusters kept with Retain, by run id.
	kept map[string]*kindCluster
}

var _ testbed.Provider = (*Provider)(nil)

// NewProvider returns a kind provider. It uses kind's docker backend
// (podman and nerdctl are not supported: the network is made with the
// docker command line).
func NewProvider(opts ProviderOptions) *Provider {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 5 * time.Minute
	}
	return &Provider{
		opts: opts,
		kind: kindcluster.NewProvider(kindcluster.ProviderWithLogger(kindLogger{log: opts.Log}), kindcluster.ProviderWithDocker()),
		kept: map[string]*kindCluster{},
	}
}

// Name implements testbed.Provider.
func (p *Provider) Name() string { return providerName }

// Check fails, wrapping testbed.ErrNotSupported, when no Docker engine
// answers; the command line calls it before it creates anything.
func (p *Provider) Check(ctx context.Context) error { return checkDocker(ctx) }

// kindCluster is what the provider creates under the kube provider's
// cluster, and what it removes: each field says whether that part exists.
type kindCluster struct {
	runID, name string
	// nodes is the number of nodes usable by pods.
	nodes int
	// dir holds kubeconfig and the image tar.
	dir, kubeconfig string
	imageRef        string
	subnet          netip.Prefix
	// network: the docker network exists; cluster: kind was asked to
	// create the cluster (its nodes may exist).
	network, cluster bool
}

// tempPattern is the name of a run's directory for os.MkdirTemp, which
// adds random digits; Down globs for it.
func tempPattern(runID string) string { return "meshbench-kind-" + runID + "-" }

// Create implements testbed.Provider: a kind cluster (or the one Retain
// kept for this run), then the kube provider's cluster on it.
func (p *Provider) Create(ctx context.Context, spec testbed.Spec) (testbed.Cluster, error) {
	if spec.Nodes < 1 {
		return nil, errors.New("kind: at least one node")
	}
	name, err := ClusterName(spec.RunID)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	kc := p.kept[spec.RunID]
	p.mu.Unlock()
	fresh := kc == nil
	if fresh {
		if kc, err = p.build(ctx, spec.RunID, name, spec.Nodes); err != nil {
			return nil, err
		}
	} else {
		if kc.nodes != spec.Nodes {
			return nil, fmt.Errorf("kind: the kept cluster %s has %d nodes for pods, this cluster needs %d", name, kc.nodes, spec.Nodes)
		}
		p.opts.Log.Info("kind: reusing the kept cluster", "cluster", name)
	}
	cl, err := p.runKube(ctx, kc, spec)
	if err != nil {
		if fresh {
			err = errors.Join(err, p.remove(context.WithoutCancel(ctx), kc))
		}
		return nil, err
	}
	if fresh && p.opts.Retain {
		p.mu.Lock()
		p.kept[spec.RunID] = kc
		p.mu.Unlock()
	}
	return cl, nil
}

// runKube runs the kube provider on the kind cluster and checks the
// addresses it got against the plan.
func (p *Provider) runKube(ctx context.Context, kc *kindCluster, spec testbed.Spec) (*cluster, error) {
	kp := kube.NewProvider(kube.ProviderOptions{
		Kubeconfig: kc.kubeconfig,
		Log:        p.opts.Log,
		Image:      kube.Image{Ref: kc.imageRef, PullPolicy: corev1.PullNever},
	})
	c, err := kp.Create(ctx, spec)
	if err != nil {
		return nil, err
	}
	kcl, ok := c.(kube.Cluster)
	if !ok {
		return nil, errors.Join(fmt.Errorf("kind: the kube provider returned a %T, not a kube.Cluster", c), c.Destroy(context.WithoutCancel(ctx)))
	}
	if err := checkAddresses(kcl, spec, kc.subnet); err != nil {
		return nil, errors.Join(err, kcl.Destroy(context.WithoutCancel(ctx)))
	}
	return &cluster{Cluster: kcl, p: p, kc: kc}, nil
}

// checkAddresses fails when a node, pod or Service address of the
// cluster is outside the address plan.
func checkAddresses(c kube.Cluster, spec testbed.Spec, subnet netip.Prefix) error {
	var errs []error
	for _, n := range c.Nodes() {
		if !subnet.Contains(n.IP) {
			errs = append(errs, fmt.Errorf("node %s has address %s, outside its network %s", n.Name, n.IP, subnet))
		}
	}
	for _, pod := range c.Pods() {
		if !PodSubnet.Contains(pod.IP) {
			errs = append(errs, fmt.Errorf("pod %s has address %s, outside %s", pod.Name, pod.IP, PodSubnet))
		}
	}
	for _, s := range spec.Services {
		if a, ok := c.ServiceAddr(s.Name); ok && !ServiceSubnet.Contains(a) {
			errs = append(errs, fmt.Errorf("service %s has address %s, outside %s", s.Name, a, ServiceSubnet))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("kind: addresses outside the plan: %w", err)
	}
	return nil
}

// build creates the run's kind cluster: the image, the docker network,
// the cluster on it, every node Ready and the image loaded into every
// node. On error it removes what it created.
func (p *Provider) build(ctx context.Context, runID, name string, nodes int) (_ *kindCluster, err error) {
	kc := &kindCluster{runID: runID, name: name, nodes: nodes, imageRef: ImageRef(runID)}
	defer func() {
		if err != nil {
			err = errors.Join(err, p.remove(context.WithoutCancel(ctx), kc))
		}
	}()
	log := p.opts.Log.With("cluster", name)
	if err := checkDocker(ctx); err != nil {
		return nil, err
	}
	if kc.dir, err = os.MkdirTemp("", tempPattern(runID)); err != nil {
		return nil, fmt.Errorf("kind: %w", err)
	}
	kc.kubeconfig = filepath.Join(kc.dir, "kubeconfig")

	start := time.Now()
	tar := filepath.Join(kc.dir, "meshbench.tar")
	if err := BuildImage(kc.imageRef, p.opts.Binary, tar); err != nil {
		return nil, fmt.Errorf("kind: %w", err)
	}
	log.Info("kind: image built", "image", kc.imageRef, "binary", p.opts.Binary, "took", since(start))

	start = time.Now()
	if kc.subnet, err = createNetwork(ctx, name, runID); err != nil {
		return nil, err
	}
	kc.network = true
	log.Info("kind: docker network created", "network", name, "subnet", kc.subnet, "gateway", Gateway(kc.subnet), "took", since(start))

	start = time.Now()
	log.Info("kind: creating the cluster", "nodes", clusterNodes(nodes), "pod_subnet", PodSubnet, "service_subnet", ServiceSubnet)
	kc.cluster = true
	if err := p.createCluster(ctx, kc); err != nil {
		return nil, fmt.Errorf("kind: create cluster %s: %w", name, err)
	}
	log.Info("kind: cluster created", "took", since(start))
	if err := p.checkNodeAddresses(kc); err != nil {
		return nil, err
	}

	start = time.Now()
	if err := p.waitNodes(ctx, kc, log); err != nil {
		return nil, err
	}
	log.Info("kind: nodes ready", "nodes", clusterNodes(nodes), "took", since(start))

	start = time.Now()
	if err := p.loadImage(ctx, kc, tar); err != nil {
		return nil, err
	}
	log.Info("kind: image loaded into the nodes", "image", kc.imageRef, "took", since(start))
	if err := os.Remove(tar); err != nil {
		return nil, fmt.Errorf("kind: %w", err)
	}
	return kc, nil
}

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }

// networkEnv is the variable kind's docker backend (v0.33.0,
// internal/providers/docker/provider.go, Provision) reads for the name of
// the network to attach nodes to, instead of its own "kind" network
// (which takes a subnet from docker's pool: 172.16/12 or 192.168/16). An
// existing network of that name is used as it is.
const networkEnv = "KIND_EXPERIMENTAL_DOCKER_NETWORK"

// envMu serializes the creations that set networkEnv: it is the process's
// environment.
var envMu sync.Mutex

// createCluster runs kind's create with the cluster's configuration, its
// nodes on the run's network (networkEnv), its kubeconfig written to the
// run's directory only (never the user's).
func (p *Provider) createCluster(ctx context.Context, kc *kindCluster) error {
	opts := []kindcluster.CreateOption{
		kindcluster.CreateWithV1Alpha4Config(Config(kc.name, kc.nodes, p.opts.NodeImage)),
		kindcluster.CreateWithKubeconfigPath(kc.kubeconfig),
		kindcluster.CreateWithWaitForReady(p.opts.ReadyTimeout),
		kindcluster.CreateWithDisplayUsage(false),
		kindcluster.CreateWithDisplaySalutation(false),
	}
	return waitOut(ctx, p.opts.Log, "create cluster", func() error {
		envMu.Lock()
		defer envMu.Unlock()
		old, had := os.LookupEnv(networkEnv)
		os.Setenv(networkEnv, kc.name)
		defer func() {
			if had {
				os.Setenv(networkEnv, old)
			} else {
				os.Unsetenv(networkEnv)
			}
		}()
		return p.kind.Create(kc.name, opts...)
	})
}

// waitOut runs fn, which cannot be cancelled (kind runs docker commands to
// their end), to its end even when ctx ends first, so that what it
// created is known and can be removed; it then returns ctx's error.
func waitOut(ctx context.Context, log *slog.Logger, what string, fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		log.Warn("kind: interrupted: letting kind finish, then removing what it made", "step", what)
		return errors.Join(ctx.Err(), <-done)
	}
}

// checkNodeAddresses fails when a node's address is outside the run's
// network: the nodes must be on it, not on a network of kind's.
func (p *Provider) checkNodeAddresses(kc *kindCluster) error {
	nodes, err := p.kind.ListInternalNodes(kc.name)
	if err != nil {
		return fmt.Errorf("kind: list nodes of %s: %w", kc.name, err)
	}
	if len(nodes) != clusterNodes(kc.nodes) {
		return fmt.Errorf("kind: cluster %s has %d nodes, want %d", kc.name, len(nodes), clusterNodes(kc.nodes))
	}
	for _, n := range nodes {
		v4, v6, err := n.IP()
		if err != nil {
			return fmt.Errorf("kind: address of node %s: %w", n, err)
		}
		a, err := netip.ParseAddr(v4)
		if err != nil || !kc.subnet.Contains(a) {
			return fmt.Errorf("kind: node %s has address %q, not in its network %s (%s)", n, v4, kc.subnet, networkEnv)
		}
		if v6 != "" {
			return fmt.Errorf("kind: node %s has an IPv6 address %s: the network is IPv4 only", n, v6)
		}
	}
	return nil
}

// waitNodes waits until every node of the cluster is Ready, as the API
// server sees it (kind's own wait covers only the control plane, and on
// its timeout only warns).
func (p *Provider) waitNodes(ctx context.Context, kc *kindCluster, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, p.opts.ReadyTimeout)
	defer cancel()
	c, err := kube.Connect(ctx, kube.Options{Kubeconfig: kc.kubeconfig, Log: p.opts.Log})
	if err != nil {
		return fmt.Errorf("kind: %w", err)
	}
	want := clusterNodes(kc.nodes)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := -1
	for {
		list, err := c.Clientset().CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		var notReady []string
		if err == nil {
			for _, n := range list.Items {
				if !nodeReady(n) {
					notReady = append(notReady, n.Name)
				}
			}
			ready := len(list.Items) - len(notReady)
			if ready != last {
				log.Info("kind: nodes ready", "ready", ready, "want", want)
				last = ready
			}
			if len(list.Items) == want && len(notReady) == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			sort.Strings(notReady)
			return fmt.Errorf("kind: nodes of %s not all Ready (%d wanted; not ready: %s; last error: %v): %w",
				kc.name, want, strings.Join(notReady, ", "), err, ctx.Err())
		case <-tick.C:
		}
	}
}

func nodeReady(n corev1.Node) bool {
	return slices.ContainsFunc(n.Status.Conditions, func(c corev1.NodeCondition) bool {
		return c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue
	})
}

// loadImage imports the image tar into every node's containerd (kind's
// nodeutils.LoadImageArchive: `ctr images import` in the node).
func (p *Provider) loadImage(ctx context.Context, kc *kindCluster, tar string) error {
	nodes, err := p.kind.ListInternalNodes(kc.name)
	if err != nil {
		return fmt.Errorf("kind: list nodes of %s: %w", kc.name, err)
	}
	return waitOut(ctx, p.opts.Log, "load image", func() error {
		errs := make([]error, len(nodes))
		var wg sync.WaitGroup
		for i, n := range nodes {
			wg.Go(func() {
				f, err := os.Open(tar)
				if err != nil {
					errs[i] = fmt.Errorf("kind: %w", err)
					return
				}
				defer f.Close()
				if err := nodeutils.LoadImageArchive(n, f); err != nil {
					errs[i] = fmt.Errorf("kind: load image %s into node %s: %w", kc.imageRef, n, err)
				}
			})
		}
		wg.Wait()
		return errors.Join(errs...)
	})
}

// remove deletes what exists of kc, in the reverse order of build: the
// kind cluster, then its docker network (docker refuses to remove one
// with containers attached), then the run's directory. What it could not
// remove stays marked, so that a later call (or Down) can try again.
func (p *Provider) remove(ctx context.Context, kc *kindCluster) error {
	var errs []error
	if kc.cluster {
		start := time.Now()
		// The kubeconfig path given keeps kind off the user's kubeconfig.
		if err := p.kind.Delete(kc.name, kc.kubeconfig); err != nil {
			errs = append(errs, fmt.Errorf("kind: delete cluster %s: %w", kc.name, err))
		} else {
			kc.cluster = false
			p.opts.Log.Info("kind: cluster deleted", "cluster", kc.name, "took", since(start))
		}
	}
	if kc.network && !kc.cluster {
		if err := removeNetwork(ctx, kc.name); err != nil {
			errs = append(errs, err)
		} else {
			kc.network = false
			p.opts.Log.Info("kind: docker network removed", "network", kc.name)
		}
	}
	if kc.dir != "" && !kc.cluster && !kc.network {
		if err := os.RemoveAll(kc.dir); err != nil {
			errs = append(errs, fmt.Errorf("kind: %w", err))
		} else {
			kc.dir = ""
		}
	}
	p.mu.Lock()
	if p.kept[kc.runID] == kc && !kc.cluster {
		delete(p.kept, kc.runID)
	}
	p.mu.Unlock()
	return errors.Join(errs...)
}

// Down implements testbed.Provider: for each docker network of the
// provider's (runID's, or every run's when runID is ""), the kind cluster
// meshbench-<run> when it exists, then the network; then the runs'
// directories. A kind cluster is deleted only with its network: one of
// that name without it was not made by this provider (build creates the
// network first, and remove deletes it last).
func (p *Provider) Down(ctx context.Context, runID string) ([]string, error) {
	if runID != "" {
		if _, err := ClusterName(runID); err != nil {
			return nil, err
		}
	}
	if err := checkDocker(ctx); err != nil {
		return nil, err
	}
	nets, err := listNetworks(ctx, runID)
	if err != nil {
		return nil, err
	}
	clusters, err := p.kind.List()
	if err != nil {
		return nil, fmt.Errorf("kind: list clusters: %w", err)
	}
	// Deleting a cluster updates the kubeconfig given: one of our own,
	// never the user's.
	scratch, err := os.MkdirTemp("", "meshbench-kinddown-")
	if err != nil {
		return nil, fmt.Errorf("kind: %w", err)
	}
	defer os.RemoveAll(scratch)
	var removed []string
	var errs []error
	for _, n := range nets {
		name := namePrefix + n.RunID
		if slices.Contains(clusters, name) {
			if err := p.kind.Delete(name, filepath.Join(scratch, "kubeconfig")); err != nil {
				errs = append(errs, fmt.Errorf("kind: delete cluster %s: %w", name, err))
				continue
			}
			removed = append(removed, "kind cluster "+name)
		}
		if err := removeNetwork(ctx, n.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "docker network "+n.Name)
	}
	pattern := tempPattern(runID) + "*"
	if runID == "" {
		pattern = "meshbench-kind-*"
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), pattern))
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, fmt.Errorf("kind: %w", err))
			continue
		}
		removed = append(removed, "directory "+d)
	}
	return removed, errors.Join(errs...)
}

// cluster is the kube provider's cluster on a kind cluster of the
// provider's: everything but Destroy is the kube cluster's.
type cluster struct {
	kube.Cluster
	p  *Provider
	kc *kindCluster

	mu        sync.Mutex
	destroyed bool
}

var _ kube.Cluster = (*cluster)(nil)

// Destroy implements testbed.Cluster: the kube cluster (the run's
// namespace, and with it the pods and agents), then, unless Retain keeps
// them, the kind cluster, its docker network and the run's directory.
func (c *cluster) Destroy(ctx context.Context) error {
	c.mu.Lock()
	if c.destroyed {
		c.mu.Unlock()
		return nil
	}
	c.destroyed = true
	c.mu.Unlock()
	err := c.Cluster.Destroy(ctx)
	if c.p.opts.Retain {
		c.p.opts.Log.Info("kind: cluster kept (retain)", "cluster", c.kc.name, "kubeconfig", c.kc.kubeconfig,
			"network", c.kc.name, "subnet", c.kc.subnet, "remove_with", "meshbench down --provider kind --run "+c.kc.runID)
		return err
	}
	return errors.Join(err, c.p.remove(context.WithoutCancel(ctx), c.kc))
}
