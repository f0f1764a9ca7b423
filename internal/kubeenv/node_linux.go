package kubeenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshbench/meshbench/internal/nsutil"
)

// Node is a real Kubernetes node: Debian's containerd (with runc and the
// CNI bridge plugin), kubelet and kube-proxy (iptables mode), all in the
// node's own network namespace mb-<run>-k<i> and their own mount
// namespace, in which /run, /var/lib and /var/log are private tmpfs. So
// kubelet's and kube-proxy's iptables chains, the CNI bridge, the pods'
// veths, every container mount and the paths kubelet and containerd fix
// (/var/lib/kubelet/device-plugins, /var/lib/cni, /var/log/containers,
// /run/containerd) stay off the host, and vanish with the node's
// processes. The node reaches the API server at https://127.0.0.1:6443
// inside its namespace (a relay to the host's loopback); the API server
// reaches the node through the fabric namespace that joins all nodes.
type Node struct {
	cp *ControlPlane

	// Index is the node's number: its name, address and pod range follow
	// from it.
	Index int
	// Name is the Kubernetes node name.
	Name string
	// IP is the node's address on the fabric (its InternalIP).
	IP netip.Addr
	// PodCIDR is the node's pod range (also its spec.podCIDR).
	PodCIDR netip.Prefix

	dir        string
	ns         *netnsHandle
	apiRelay   *relay
	containerd *proc
	kubelet    *proc
	kubeProxy  *proc
}

// The paths a node covers with its own tmpfs, in its own mount namespace.
var nodeTmpfs = []string{"/run", "/var/lib", "/var/log"}

// nodeAPIServerAddr is where a node's processes reach the API server.
const nodeAPIServerAddr = "127.0.0.1:6443"

// NetnsPath returns the node's network namespace (hostNetwork pods run in
// it too).
func (n *Node) NetnsPath() string { return n.ns.path }

// ContainerdSocket returns the node's containerd socket.
func (n *Node) ContainerdSocket() string {
	return filepath.Join(n.dir, "containerd", "containerd.sock")
}

// CgroupParent returns kubelet's cgroup root, relative to each hierarchy's
// mount point: pods are in CgroupParent()/kubepods/...
func (n *Node) CgroupParent() string {
	return filepath.Join(CgroupTop(n.cp.opts.RunID), fmt.Sprintf("k%d", n.Index))
}

// MountNamespacePath returns the mount namespace the node's processes and
// containers share.
func (n *Node) MountNamespacePath() string {
	return fmt.Sprintf("/proc/%d/ns/mnt", n.containerd.cmd.Process.Pid)
}

func (n *Node) sysCgroup() string { return n.CgroupParent() + "-sys" }

// AddNode starts a real node, the next by index, and returns once it is
// Ready. The first node also saves the sysctls kubelet changes
// (kernel.panic, kernel.panic_on_oops, vm.overcommit_memory, ...), which
// Stop restores. Needs containerd, ctr, runc, nsenter, unshare and the CNI
// plugins in /usr/lib/cni (`ci/install-deps.sh test`).
func (cp *ControlPlane) AddNode(ctx context.Context) (_ *Node, err error) {
	start := time.Now()
	cp.mu.Lock()
	if cp.stopped {
		cp.mu.Unlock()
		return nil, fmt.Errorf("add node: %w", errStopped)
	}
	i := len(cp.nodes)
	if err := checkIndex(i); err != nil {
		cp.mu.Unlock()
		return nil, fmt.Errorf("add node: %w", err)
	}
	n := &Node{cp: cp, Index: i, Name: NodeName(i), IP: NodeIP(i), PodCIDR: NodePodCIDR(i)}
	cp.nodes = append(cp.nodes, n)
	cp.mu.Unlock()
	defer func() {
		if err != nil {
			err = fmt.Errorf("add node %s: %w", n.Name, errors.Join(err, n.stop()))
		}
	}()
	for _, tool := range []string{"containerd", "containerd-shim-runc-v2", "ctr", "runc", "nsenter", "unshare", "iptables", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not found (install with ci/install-deps.sh test): %w", tool, err)
		}
	}
	if _, err := os.Stat(filepath.Join(cniBinDir, "bridge")); err != nil {
		return nil, fmt.Errorf("CNI plugins not found (install containernetworking-plugins with ci/install-deps.sh test): %w", err)
	}
	if err := cp.saveSysctls(); err != nil {
		return nil, err
	}
	if err := n.network(); err != nil {
		return nil, err
	}
	if err := n.files(); err != nil {
		return nil, err
	}
	if err := n.startContainerd(ctx); err != nil {
		return nil, err
	}
	if err := n.register(ctx); err != nil {
		return nil, err
	}
	if err := n.startKubelet(ctx); err != nil {
		return nil, err
	}
	cp.opts.Log.Info("kube node ready", "node", n.Name, "ip", n.IP, "pods", n.PodCIDR, "took", time.Since(start).Round(time.Millisecond))
	return n, nil
}

const cniBinDir = "/usr/lib/cni"

// network creates the fabric namespace (once) and the node's namespace,
// joined by a veth on the fabric bridge, with routes to every other node's
// pod range.
func (n *Node) network() error {
	cp := n.cp
	cp.mu.Lock()
	fab := cp.fabric
	cp.mu.Unlock()
	if fab == nil {
		f, err := createNetns(NetnsName(cp.opts.RunID, -1), nil)
		if err != nil {
			return err
		}
		cp.mu.Lock()
		cp.fabric = f
		cp.mu.Unlock()
		fab = f
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "fab0"}}
		if err := fab.nl.LinkAdd(br); err != nil {
			return fmt.Errorf("fabric bridge: %w", err)
		}
		if err := fab.nl.AddrAdd(br, &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(fabricIP, NodeCIDR.Bits()))}); err != nil {
			return fmt.Errorf("fabric address: %w", err)
		}
		if err := fab.nl.LinkSetUp(br); err != nil {
			return fmt.Errorf("fabric bridge up: %w", err)
		}
	}
	var err error
	n.ns, err = createNetns(NetnsName(cp.opts.RunID, n.Index), map[string]string{
		"net/ipv4/ip_forward":                 "1",
		"net/bridge/bridge-nf-call-iptables":  "1",
		"net/bridge/bridge-nf-call-ip6tables": "1",
	})
	if err != nil {
		return err
	}
	br, err := fab.nl.LinkByName("fab0")
	if err != nil {
		return fmt.Errorf("fabric bridge: %w", err)
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: fmt.Sprintf("k%d", n.Index), MasterIndex: br.Attrs().Index},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(n.ns.h),
	}
	if err := fab.nl.LinkAdd(veth); err != nil {
		return fmt.Errorf("node uplink: %w", err)
	}
	if err := fab.nl.LinkSetUp(veth); err != nil {
		return fmt.Errorf("node uplink up: %w", err)
	}
	eth0, err := n.ns.nl.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("node uplink: %w", err)
	}
	if err := n.ns.nl.AddrAdd(eth0, &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(n.IP, NodeCIDR.Bits()))}); err != nil {
		return fmt.Errorf("node address: %w", err)
	}
	if err := n.ns.nl.LinkSetUp(eth0); err != nil {
		return fmt.Errorf("node uplink up: %w", err)
	}
	// Services are reached by DNAT in the node; a route lets hostNetwork
	// processes' connects start. Unmatched VIP traffic dies in the fabric.
	if err := n.ns.nl.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: prefixNet(ServiceCIDR), Gw: fabricIP.AsSlice()}); err != nil {
		return fmt.Errorf("service route: %w", err)
	}
	if err := fab.nl.RouteAdd(&netlink.Route{LinkIndex: br.Attrs().Index, Dst: prefixNet(n.PodCIDR), Gw: n.IP.AsSlice()}); err != nil {
		return fmt.Errorf("fabric route to %s: %w", n.PodCIDR, err)
	}
	for _, o := range cp.Nodes() {
		if o == n || o.ns == nil || o.ns.nl == nil {
			continue
		}
		if err := n.ns.nl.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: prefixNet(o.PodCIDR), Gw: o.IP.AsSlice()}); err != nil {
			return fmt.Errorf("route to %s: %w", o.PodCIDR, err)
		}
		oeth, err := o.ns.nl.LinkByName("eth0")
		if err != nil {
			return fmt.Errorf("node %s uplink: %w", o.Name, err)
		}
		if err := o.ns.nl.RouteAdd(&netlink.Route{LinkIndex: oeth.Attrs().Index, Dst: prefixNet(n.PodCIDR), Gw: n.IP.AsSlice()}); err != nil {
			return fmt.Errorf("route on %s to %s: %w", o.Name, n.PodCIDR, err)
		}
	}
	l, err := nsutil.Listen(n.ns.path, "tcp", nodeAPIServerAddr)
	if err != nil {
		return fmt.Errorf("API server relay: %w", err)
	}
	n.apiRelay = newTCPRelay(l, fmt.Sprintf("127.0.0.1:%d", cp.apiPort))
	return nil
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// dialFabric connects to addr from the fabric namespace, which routes to
// every node and pod.
func (cp *ControlPlane) dialFabric(ctx context.Context, addr string) (net.Conn, error) {
	cp.mu.Lock()
	fab := cp.fabric
	cp.mu.Unlock()
	if fab == nil {
		return nil, errors.New("no real node yet")
	}
	return nsutil.Dial(ctx, fab.path, "tcp", addr)
}

// DialContext connects to a node or pod address (inside 198.18.0.0/15)
// from the fabric namespace, as the API server's proxy does. Use it to
// reach pods from the test process, e.g. as an http.Transport's
// DialContext.
func (cp *ControlPlane) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !benchRange.Contains(ap.Addr()) {
		return nil, fmt.Errorf("dial %s: want a literal address in %s", addr, benchRange)
	}
	return cp.dialFabric(ctx, addr)
}

func (n *Node) path(elem ...string) string { return filepath.Join(append([]string{n.dir}, elem...)...) }

// files writes the node's certificates, kubeconfigs and the configuration
// of containerd, CNI, kubelet and kube-proxy.
func (n *Node) files() error {
	cp := n.cp
	n.dir = filepath.Join(cp.dir, fmt.Sprintf("k%d", n.Index))
	for _, d := range []string{"containerd", "cni/net.d", "cni/ipam", "kubelet/root", "kubelet/certs", "pki", "logs"} {
		if err := os.MkdirAll(n.path(d), 0o755); err != nil {
			return fmt.Errorf("node directory: %w", err)
		}
	}
	for _, rel := range []string{n.CgroupParent(), n.sysCgroup()} {
		if err := cp.cg.create(rel); err != nil {
			return err
		}
	}
	server := "https://" + nodeAPIServerAddr
	for _, c := range []struct{ file, cn, org string }{
		{"kubelet", "system:node:" + n.Name, "system:nodes"},
		{"kube-proxy", "system:kube-proxy", ""},
	} {
		var orgs []string
		if c.org != "" {
			orgs = []string{c.org}
		}
		kp, err := cp.ca.issue(c.cn, orgs, nil, nil)
		if err != nil {
			return err
		}
		crt, key, err := kp.write(n.path("pki"), c.file)
		if err != nil {
			return err
		}
		if err := os.WriteFile(n.path(c.file+".kubeconfig"), []byte(kubeconfig(server, cp.ca.certPEM, c.cn, "", crt, key)), 0o600); err != nil {
			return fmt.Errorf("write kubeconfig: %w", err)
		}
	}
	gw := n.PodCIDR.Addr().Next()
	files := map[string]string{
		"cni/net.d/10-meshbench.conflist": fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "meshbench",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": %q,
        "ranges": [[{"subnet": %q, "gateway": %q}]],
        "routes": [{"dst": %q}]
      }
    }
  ]
}
`, n.path("cni", "ipam"), n.PodCIDR.String(), gw.String(), benchRange.String()),
		"containerd/config.toml": fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %[3]q

[ttrpc]
  address = "%[3]s.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = %[4]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %[6]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[7]q
    conf_dir = %[8]q
    max_conf_num = 1
`, n.path("containerd", "root"), n.path("containerd", "state"), n.ContainerdSocket(), n.path("containerd", "opt"),
			PauseImage, n.path("containerd", "runc"), cniBinDir, n.path("cni", "net.d")),
		"kubelet/config.yaml": fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %[1]q
cgroupsPerQOS: true
failSwapOn: false
oomScoreAdj: 0
readOnlyPort: 0
address: %[2]q
port: 10250
healthzBindAddress: 127.0.0.1
healthzPort: 10248
containerRuntimeEndpoint: unix://%[3]s
imageServiceEndpoint: unix://%[3]s
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: %[4]q
authorization:
  mode: Webhook
clusterDNS: []
resolvConf: ""
registerNode: true
protectKernelDefaults: false
makeIPTablesUtilChains: true
shutdownGracePeriod: 0s
shutdownGracePeriodCriticalPods: 0s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%%"
  imagefs.available: "1%%"
  nodefs.inodesFree: "1%%"
serializeImagePulls: false
nodeStatusReportFrequency: 10s
syncFrequency: 10s
fileCheckFrequency: 20s
staticPodPath: ""
`, "/"+n.CgroupParent(), n.IP.String(), n.ContainerdSocket(), filepath.Join(cp.dir, "pki", "ca.crt")),
		"kube-proxy.yaml": fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %[1]q
mode: iptables
hostnameOverride: %[2]q
clusterCIDR: %[3]q
detectLocalMode: ClusterCIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: [%[4]q]
oomScoreAdj: 0
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
iptables:
  localhostNodePorts: false
  masqueradeAll: false
  minSyncPeriod: 0s
  syncPeriod: 30s
`, n.path("kube-proxy.kubeconfig"), n.Name, ClusterCIDR.String(), NodeCIDR.String()),
	}
	for name, content := range files {
		if err := os.WriteFile(n.path(name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// inNode returns argv prefixed to run it in the node's network namespace
// and, once containerd runs, in its mount namespace.
func (n *Node) inNode(argv ...string) []string {
	pre := []string{"nsenter", "--net=" + n.ns.path}
	if n.containerd != nil {
		pre = append(pre, "--mount="+n.MountNamespacePath())
	}
	return append(pre, argv...)
}

func (n *Node) start(name string, argv []string) (*proc, error) {
	return startProc(name, argv, nil, n.path("logs"), n.cp.cg, n.sysCgroup())
}

// startContainerd starts containerd in a new mount namespace (private
// propagation) with tmpfs over nodeTmpfs, then imports the pause image.
func (n *Node) startContainerd(ctx context.Context) error {
	var script strings.Builder
	script.WriteString("set -e\n")
	for _, d := range nodeTmpfs {
		fmt.Fprintf(&script, "mount -t tmpfs -o mode=0755 %s %s\n", NetnsName(n.cp.opts.RunID, n.Index), d)
	}
	fmt.Fprintf(&script, "exec containerd --config %s\n", n.path("containerd", "config.toml"))
	argv := n.inNode("unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script.String())
	p, err := n.start("containerd", argv)
	if err != nil {
		return err
	}
	n.containerd = p
	if err := poll(ctx, "containerd", 30*time.Second, []*proc{p}, func(ctx context.Context) (bool, error) {
		out, err := exec.CommandContext(ctx, "ctr", "--address", n.ContainerdSocket(), "version").CombinedOutput()
		if err != nil {
			return false, fmt.Errorf("ctr version: %w: %s", err, tail(string(out)))
		}
		return true, nil
	}); err != nil {
		return err
	}
	tar, err := n.cp.pauseImage()
	if err != nil {
		return err
	}
	return n.ImportImage(ctx, tar)
}

// ImportImage imports an image tarball (as written by BuildImage) into the
// node's containerd, for pods that run it with imagePullPolicy: Never.
func (n *Node) ImportImage(ctx context.Context, tarPath string) error {
	out, err := exec.CommandContext(ctx, "ctr", "--address", n.ContainerdSocket(), "-n", "k8s.io",
		"images", "import", "--platform", "linux/"+goarch, tarPath).CombinedOutput()
	if err != nil {
		return fmt.Errorf("import image %s into %s: %w: %s", tarPath, n.Name, err, tail(string(out)))
	}
	return nil
}

// register creates the Node object with its pod range before kubelet
// starts, which then adopts it.
func (n *Node) register(ctx context.Context) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:   n.Name,
			Labels: map[string]string{"kubernetes.io/hostname": n.Name, "meshbench.io/node-index": strconv.Itoa(n.Index)},
		},
		Spec: corev1.NodeSpec{PodCIDR: n.PodCIDR.String(), PodCIDRs: []string{n.PodCIDR.String()}},
	}
	if _, err := n.cp.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create node object: %w", err)
	}
	return nil
}

func (n *Node) startKubelet(ctx context.Context) error {
	kl, err := n.start(Kubelet, n.inNode(n.cp.bins.Path(Kubelet),
		"--config="+n.path("kubelet", "config.yaml"),
		"--kubeconfig="+n.path("kubelet.kubeconfig"),
		"--root-dir="+n.path("kubelet", "root"),
		"--cert-dir="+n.path("kubelet", "certs"),
		"--hostname-override="+n.Name,
		"--node-ip="+n.IP.String(),
		"--v=2",
	))
	if err != nil {
		return err
	}
	n.kubelet = kl
	kp, err := n.start(KubeProxy, n.inNode(n.cp.bins.Path(KubeProxy), "--config="+n.path("kube-proxy.yaml"), "--v=2"))
	if err != nil {
		return err
	}
	n.kubeProxy = kp
	return poll(ctx, "node "+n.Name+" Ready", 90*time.Second, []*proc{n.containerd, kl, kp}, func(ctx context.Context) (bool, error) {
		return nodeReady(ctx, n.cp.client, n.Name)
	})
}

// stop kills every process of the node (kubelet first, then whatever is in
// its cgroups: containers, shims, containerd, kube-proxy), which frees its
// mount namespace, and removes its network namespace.
func (n *Node) stop() error {
	var errs []error
	n.kubelet.stop(5 * time.Second)
	n.kubeProxy.stop(5 * time.Second)
	n.containerd.stop(5 * time.Second)
	if n.cp.cg != nil {
		errs = append(errs, n.cp.cg.destroy(n.CgroupParent(), 15*time.Second), n.cp.cg.destroy(n.sysCgroup(), 15*time.Second))
	}
	if n.apiRelay != nil {
		n.apiRelay.close()
	}
	errs = append(errs, n.ns.delete())
	return errors.Join(errs...)
}

// pauseImage builds the sandbox image's tarball once per environment.
func (cp *ControlPlane) pauseImage() (string, error) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	path := filepath.Join(cp.dir, "images", "pause.tar")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", fmt.Errorf("pause image: %w", err)
	}
	if err := BuildImage(PauseImage, cp.bins.Path(Pause), nil, path); err != nil {
		return "", err
	}
	return path, nil
}
