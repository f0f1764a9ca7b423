package kubeenv

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// ControlPlane is a running etcd, kube-apiserver, kube-controller-manager
// and kube-scheduler, plus kwok when asked for fake nodes, and the real
// nodes added with AddNode. Every process runs in the cgroup
// meshbench-<run>/cp (nodes in meshbench-<run>/k<i>...), dies with the
// process that started it (parent-death signal), and is stopped by Stop.
type ControlPlane struct {
	opts Options
	dir  string
	bins Binaries
	cg   *cgroups
	ca   *ca

	adminToken     string
	apiPort        int
	kubeconfigPath string
	cfg            *rest.Config
	client         kubernetes.Interface

	procs  []*proc // in start order
	egress *relay  // the API server's HTTP CONNECT proxy into the fabric

	mu       sync.Mutex
	nodes    []*Node
	fabric   *netnsHandle
	sysctls  *savedSysctls
	stopped  bool
	stopErr  error
	stopOnce sync.Once
}

// StartControlPlane starts a control plane and returns once the API server
// is ready and, when asked for, kwok's fake nodes are Ready. On error it
// leaves nothing behind. Needs root.
func StartControlPlane(ctx context.Context, opts Options) (_ *ControlPlane, err error) {
	if err := opts.defaults(); err != nil {
		return nil, fmt.Errorf("start control plane: %w", err)
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("start control plane: needs root")
	}
	cp := &ControlPlane{opts: opts, bins: opts.Binaries}
	if cp.bins == nil {
		if cp.bins, err = EnsureBinaries(ctx, opts.Log); err != nil {
			return nil, fmt.Errorf("start control plane: %w", err)
		}
	}
	start := time.Now()
	defer func() {
		if err != nil {
			if serr := cp.Stop(context.Background()); serr != nil {
				err = errors.Join(err, serr)
			}
			err = fmt.Errorf("start control plane: %w", err)
		}
	}()
	if err := cp.prepare(); err != nil {
		return nil, err
	}
	if err := cp.startEtcdAndAPIServer(ctx); err != nil {
		return nil, err
	}
	if err := cp.startControllers(ctx); err != nil {
		return nil, err
	}
	if opts.KwokNodes > 0 {
		if err := cp.startKwok(ctx); err != nil {
			return nil, err
		}
	}
	opts.Log.Info("kube control plane ready", "run", opts.RunID, "dir", cp.dir, "took", time.Since(start).Round(time.Millisecond))
	return cp, nil
}

// RunID returns the run id that names the environment's host objects.
func (cp *ControlPlane) RunID() string { return cp.opts.RunID }

// Dir returns the run directory.
func (cp *ControlPlane) Dir() string { return cp.dir }

// Config returns a client configuration for a system:masters user.
func (cp *ControlPlane) Config() *rest.Config { return rest.CopyConfig(cp.cfg) }

// Client returns a clientset for a system:masters user.
func (cp *ControlPlane) Client() kubernetes.Interface { return cp.client }

// KubeconfigPath returns a kubeconfig file for the same user as Config,
// usable from the host's root network namespace.
func (cp *ControlPlane) KubeconfigPath() string { return cp.kubeconfigPath }

// Nodes returns the real nodes added so far.
func (cp *ControlPlane) Nodes() []*Node {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return append([]*Node(nil), cp.nodes...)
}

func (cp *ControlPlane) prepare() error {
	if cp.opts.Dir == "" {
		d, err := os.MkdirTemp("", "meshbench-kube-"+cp.opts.RunID+"-")
		if err != nil {
			return fmt.Errorf("run directory: %w", err)
		}
		cp.dir = d
	} else {
		if err := os.MkdirAll(cp.opts.Dir, 0o755); err != nil {
			return fmt.Errorf("run directory: %w", err)
		}
		cp.dir = cp.opts.Dir
	}
	abs, err := filepath.Abs(cp.dir)
	if err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	cp.dir = abs
	for _, hidden := range nodeTmpfs {
		if abs == hidden || strings.HasPrefix(abs, hidden+"/") {
			return fmt.Errorf("run directory %s: must not be under %s, which nodes cover with their own tmpfs", abs, hidden)
		}
	}
	if err := os.Chmod(cp.dir, 0o755); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	if err := os.WriteFile(filepath.Join(cp.dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	for _, d := range []string{"logs", "pki", "etcd", "apiserver", "kcm-flex"} {
		if err := os.MkdirAll(filepath.Join(cp.dir, d), 0o755); err != nil {
			return fmt.Errorf("run directory: %w", err)
		}
	}
	if cp.cg, err = detectCgroups(); err != nil {
		return err
	}
	if err := cp.cg.create(filepath.Join(CgroupTop(cp.opts.RunID), "cp")); err != nil {
		return err
	}
	if cp.ca, err = newCA(); err != nil {
		return err
	}
	pki := filepath.Join(cp.dir, "pki")
	if err := os.WriteFile(filepath.Join(pki, "ca.crt"), cp.ca.certPEM, 0o644); err != nil {
		return fmt.Errorf("write ca: %w", err)
	}
	serving, err := cp.ca.issue("kube-apiserver", nil,
		[]net.IP{net.IPv4(127, 0, 0, 1), APIServerServiceIP.AsSlice(), fabricIP.AsSlice()},
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"})
	if err != nil {
		return err
	}
	if _, _, err := serving.write(pki, "apiserver"); err != nil {
		return err
	}
	kc, err := cp.ca.issue("kube-apiserver-kubelet-client", []string{"system:masters"}, nil, nil)
	if err != nil {
		return err
	}
	if _, _, err := kc.write(pki, "apiserver-kubelet-client"); err != nil {
		return err
	}
	if err := newServiceAccountKey(filepath.Join(pki, "sa.key")); err != nil {
		return err
	}
	var tok [16]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	cp.adminToken = hex.EncodeToString(tok[:])
	tokens := fmt.Sprintf("%s,meshbench-admin,meshbench-admin,\"system:masters\"\n", cp.adminToken)
	if err := os.WriteFile(filepath.Join(pki, "tokens.csv"), []byte(tokens), 0o600); err != nil {
		return fmt.Errorf("write token file: %w", err)
	}
	return nil
}

// freePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (cp *ControlPlane) start(name string, argv []string, env ...string) (*proc, error) {
	p, err := startProc(name, argv, env, filepath.Join(cp.dir, "logs"), cp.cg, filepath.Join(CgroupTop(cp.opts.RunID), "cp"))
	if err != nil {
		return nil, err
	}
	cp.mu.Lock()
	cp.procs = append(cp.procs, p)
	cp.mu.Unlock()
	return p, nil
}

func (cp *ControlPlane) startEtcdAndAPIServer(ctx context.Context) error {
	pki := filepath.Join(cp.dir, "pki")
	clientPort, err := freePort()
	if err != nil {
		return err
	}
	peerPort, err := freePort()
	if err != nil {
		return err
	}
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	etcd, err := cp.start(Etcd, []string{cp.bins.Path(Etcd),
		"--name=default",
		"--data-dir=" + filepath.Join(cp.dir, "etcd"),
		"--listen-client-urls=" + clientURL,
		"--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=default=" + peerURL,
		"--unsafe-no-fsync",
		"--log-level=warn",
	})
	if err != nil {
		return err
	}
	if err := poll(ctx, "etcd", 30*time.Second, []*proc{etcd}, func(ctx context.Context) (bool, error) {
		return httpOK(ctx, http.DefaultClient, clientURL+"/health", "")
	}); err != nil {
		return err
	}

	// The API server reaches kubelets and pods (logs, exec, port-forward,
	// proxy) through an HTTP CONNECT proxy on a unix socket, which dials
	// from the fabric namespace: nothing is added to the host's network.
	sock := filepath.Join(cp.dir, "egress.sock")
	if cp.egress, err = newConnectRelay(sock, cp.dialFabric); err != nil {
		return err
	}
	egressConf := filepath.Join(cp.dir, "apiserver", "egress.yaml")
	if err := os.WriteFile(egressConf, []byte(fmt.Sprintf(`apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: %s
`, sock)), 0o644); err != nil {
		return fmt.Errorf("write egress config: %w", err)
	}

	if cp.apiPort, err = freePort(); err != nil {
		return err
	}
	api, err := cp.start(KubeAPIServer, []string{cp.bins.Path(KubeAPIServer),
		"--etcd-servers=" + clientURL,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(cp.apiPort),
		"--advertise-address=" + fabricIP.String(),
		"--endpoint-reconciler-type=none",
		"--cert-dir=" + filepath.Join(cp.dir, "apiserver"),
		"--tls-cert-file=" + filepath.Join(pki, "apiserver.crt"),
		"--tls-private-key-file=" + filepath.Join(pki, "apiserver.key"),
		"--client-ca-file=" + filepath.Join(pki, "ca.crt"),
		"--token-auth-file=" + filepath.Join(pki, "tokens.csv"),
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + filepath.Join(pki, "sa.key"),
		"--service-account-signing-key-file=" + filepath.Join(pki, "sa.key"),
		"--service-cluster-ip-range=" + ServiceCIDR.String(),
		"--allow-privileged=true",
		"--disable-admission-plugins=ServiceAccount",
		"--kubelet-client-certificate=" + filepath.Join(pki, "apiserver-kubelet-client.crt"),
		"--kubelet-client-key=" + filepath.Join(pki, "apiserver-kubelet-client.key"),
		"--kubelet-preferred-address-types=InternalIP",
		"--egress-selector-config-file=" + egressConf,
		"--profiling=false",
	})
	if err != nil {
		return err
	}
	server := fmt.Sprintf("https://127.0.0.1:%d", cp.apiPort)
	cp.cfg = &rest.Config{
		Host:            server,
		BearerToken:     cp.adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: cp.ca.certPEM},
		QPS:             100,
		Burst:           200,
	}
	cp.kubeconfigPath = filepath.Join(cp.dir, "admin.kubeconfig")
	if err := os.WriteFile(cp.kubeconfigPath, []byte(kubeconfig(server, cp.ca.certPEM, "meshbench-admin", cp.adminToken, "", "")), 0o600); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	if cp.client, err = kubernetes.NewForConfig(cp.cfg); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cp.ca.cert)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	return poll(ctx, "kube-apiserver /readyz", 60*time.Second, []*proc{etcd, api}, func(ctx context.Context) (bool, error) {
		return httpOK(ctx, hc, server+"/readyz", cp.adminToken)
	})
}

// httpOK reports whether GET url answers 200.
func httpOK(ctx context.Context, c *http.Client, url, token string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return true, nil
}

func (cp *ControlPlane) startControllers(ctx context.Context) error {
	pki := filepath.Join(cp.dir, "pki")
	kcmPort, err := freePort()
	if err != nil {
		return err
	}
	schedPort, err := freePort()
	if err != nil {
		return err
	}
	kcm, err := cp.start(KubeControllerManager, []string{cp.bins.Path(KubeControllerManager),
		"--kubeconfig=" + cp.kubeconfigPath,
		"--authentication-kubeconfig=" + cp.kubeconfigPath,
		"--authorization-kubeconfig=" + cp.kubeconfigPath,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(kcmPort),
		"--cert-dir=" + filepath.Join(cp.dir, "kcm-certs"),
		"--service-cluster-ip-range=" + ServiceCIDR.String(),
		"--cluster-cidr=" + ClusterCIDR.String(),
		"--allocate-node-cidrs=false",
		"--root-ca-file=" + filepath.Join(pki, "ca.crt"),
		"--service-account-private-key-file=" + filepath.Join(pki, "sa.key"),
		"--use-service-account-credentials=false",
		"--flex-volume-plugin-dir=" + filepath.Join(cp.dir, "kcm-flex"),
		"--profiling=false",
	})
	if err != nil {
		return err
	}
	sched, err := cp.start(KubeScheduler, []string{cp.bins.Path(KubeScheduler),
		"--kubeconfig=" + cp.kubeconfigPath,
		"--authentication-kubeconfig=" + cp.kubeconfigPath,
		"--authorization-kubeconfig=" + cp.kubeconfigPath,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(schedPort),
		"--cert-dir=" + filepath.Join(cp.dir, "scheduler-certs"),
		"--profiling=false",
	})
	if err != nil {
		return err
	}
	// Their serving certificates are self-signed: health only.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	for _, c := range []struct {
		p    *proc
		port int
	}{{kcm, kcmPort}, {sched, schedPort}} {
		url := fmt.Sprintf("https://127.0.0.1:%d/healthz", c.port)
		if err := poll(ctx, c.p.name+" /healthz", 60*time.Second, []*proc{c.p}, func(ctx context.Context) (bool, error) {
			return httpOK(ctx, hc, url, "")
		}); err != nil {
			return err
		}
	}
	return nil
}

// startKwok runs kwok for nodes annotated kwok.x-k8s.io/node=fake and
// creates opts.KwokNodes of them, each with its own pod range.
func (cp *ControlPlane) startKwok(ctx context.Context) error {
	stages := filepath.Join(filepath.Dir(cp.bins.Path(Kwok)), KwokStages)
	kwok, err := cp.start(Kwok, []string{cp.bins.Path(Kwok),
		"--kubeconfig=" + cp.kubeconfigPath,
		"--config=" + stages,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
		"--cidr=" + kwokPodCIDR(MaxNodes-1).String(),
		"--node-ip=" + kwokNodeIP.String(),
		"--node-lease-duration-seconds=40",
	})
	if err != nil {
		return err
	}
	for i := range cp.opts.KwokNodes {
		n := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name:        KwokNodeName(i),
				Annotations: map[string]string{"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
				Labels:      map[string]string{"type": "kwok", "kubernetes.io/hostname": KwokNodeName(i), "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"},
			},
			Spec: corev1.NodeSpec{PodCIDR: kwokPodCIDR(i).String(), PodCIDRs: []string{kwokPodCIDR(i).String()}},
		}
		if _, err := cp.client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create kwok node %s: %w", n.Name, err)
		}
	}
	return poll(ctx, "kwok nodes Ready", 60*time.Second, []*proc{kwok}, func(ctx context.Context) (bool, error) {
		for i := range cp.opts.KwokNodes {
			ok, err := nodeReady(ctx, cp.client, KwokNodeName(i))
			if !ok {
				return false, err
			}
		}
		return true, nil
	})
}

// nodeReady reports whether the node's Ready condition is True.
func nodeReady(ctx context.Context, c kubernetes.Interface, name string) (bool, error) {
	n, err := c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue, fmt.Errorf("node %s: %s", name, cond.Message)
		}
	}
	return false, fmt.Errorf("node %s: no Ready condition yet", name)
}

// Stop stops the nodes, then kwok, the scheduler, the controller manager,
// the API server and etcd, in that order; removes the environment's
// cgroups, network namespaces and run directory; and restores the sysctls
// kubelet changed. It is safe to call more than once and after a failed
// start. It returns what it could not undo.
func (cp *ControlPlane) Stop(ctx context.Context) error {
	cp.stopOnce.Do(func() { cp.stopErr = cp.stop(ctx) })
	return cp.stopErr
}

func (cp *ControlPlane) stop(ctx context.Context) error {
	start := time.Now()
	cp.mu.Lock()
	cp.stopped = true
	nodes := cp.nodes
	cp.nodes = nil
	procs := cp.procs
	cp.mu.Unlock()
	var errs []error
	for i := len(nodes) - 1; i >= 0; i-- {
		errs = append(errs, nodes[i].stop())
	}
	// Reverse start order: kwok, scheduler, controller manager, API server,
	// and etcd last (the API server hangs for seconds without it).
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop(5 * time.Second)
	}
	if cp.egress != nil {
		cp.egress.close()
	}
	if cp.cg != nil {
		errs = append(errs, cp.cg.destroy(CgroupTop(cp.opts.RunID), 10*time.Second))
	}
	cp.mu.Lock()
	fab := cp.fabric
	cp.fabric = nil
	saved := cp.sysctls
	cp.sysctls = nil
	cp.mu.Unlock()
	if fab != nil {
		errs = append(errs, fab.delete())
	}
	// The last environment with nodes restores them.
	if saved != nil && otherLiveSysctls(cp.opts.RunID) == nil {
		errs = append(errs, saved.restore())
	}
	if cp.dir != "" {
		if err := os.RemoveAll(cp.dir); err != nil {
			errs = append(errs, fmt.Errorf("remove run directory: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop kube environment %s: %w", cp.opts.RunID, err)
	}
	cp.opts.Log.Info("kube environment stopped", "run", cp.opts.RunID, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

const ownerFile = "owner.pid"
