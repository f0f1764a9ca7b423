package netns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/meshbench/meshbench/harness/testbed"
)

// Addressing plan (RFC 2544 benchmarking range only).
var (
	podSupernet = netip.MustParsePrefix("198.18.0.0/15")
)

func nodeIP(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 19, 0, byte(i + 1)}) }
func podCIDR(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i), 0}), 24)
}
func gatewayIP(i int) netip.Addr  { return netip.AddrFrom4([4]byte{198, 18, byte(i), 1}) }
func podIP(i, k int) netip.Addr   { return netip.AddrFrom4([4]byte{198, 18, byte(i), byte(10 + k)}) }
func fabricMAC() net.HardwareAddr { return net.HardwareAddr{0x02, 0x05, 198, 19, 0, 0xfe} }
func mac(kind byte, a netip.Addr) net.HardwareAddr {
	b := a.As4()
	return net.HardwareAddr{0x02, kind, b[0], b[1], b[2], b[3]}
}

// MAC kinds: the second byte of every locally administered address.
const (
	macPod    = 0x00 // pod eth0
	macHost   = 0x01 // node side of a pod's veth
	macBridge = 0x02 // node br0
	macUplink = 0x03 // node uplink
	macFabric = 0x04 // fabric side of a node's uplink
)

// Interface indices of the veth ends created from a node namespace. The
// kernel treats a veth's carrier change as urgent, and acts on it at once,
// only when the veth's index differs from its peer's; otherwise linkwatch
// may sit on it for up to a second, during which the bridge port stays
// disabled and packets are lost. Peers get small indices from their new
// namespaces (at most 2+MaxNodes in the fabric), so these never match them.
const (
	uplinkIndex   = 20000 // node side of the uplink
	hostVethIndex = 1000  // + pod index in Spec.Pods: node side of a pod veth
)

func ipNet(a netip.Addr, bits int) *net.IPNet {
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(bits, 32)}
}

func prefixNet(p netip.Prefix) *net.IPNet { return ipNet(p.Addr(), p.Bits()) }

// cluster is a testbed.Cluster of network namespaces.
type cluster struct {
	p     *Provider
	id    string
	log   *slog.Logger
	roots cgroupRoots

	nodes  []*testbed.Node
	pods   []*testbed.Pod
	byName map[string]*testbed.Pod

	mu        sync.Mutex
	netns     []string // fabric, nodes, pods: in creation order
	cgTops    []string // meshbench-<id> in each hierarchy
	procs     []*testbed.Process
	destroyed bool
}

var _ testbed.Cluster = (*cluster)(nil)

// Create builds the cluster: a fabric namespace with a bridge, a namespace
// per node with an uplink to the fabric and a pod bridge, and a namespace
// and cgroups per pod with a veth to its node's bridge. On error it removes
// everything it made.
func (p *Provider) Create(ctx context.Context, spec testbed.Spec) (testbed.Cluster, error) {
	if err := validateSpec(spec); err != nil {
		return nil, fmt.Errorf("create cluster: %w", err)
	}
	roots, err := p.roots()
	if err != nil {
		return nil, fmt.Errorf("create cluster %s: %w", spec.RunID, err)
	}
	c := &cluster{
		p:      p,
		id:     spec.RunID,
		log:    p.log.With("run", spec.RunID),
		roots:  roots,
		byName: map[string]*testbed.Pod{},
	}
	b := &builder{c: c, spec: spec}
	err = b.build(ctx)
	for _, n := range b.open {
		n.close()
	}
	if err != nil {
		err = fmt.Errorf("create cluster %s: %w", spec.RunID, err)
		if terr := c.teardown(context.WithoutCancel(ctx)); terr != nil {
			err = errors.Join(err, fmt.Errorf("clean up after failed create: %w", terr))
		}
		return nil, err
	}
	c.log.Debug("cluster created", "nodes", len(c.nodes), "pods", len(c.pods))
	return c, nil
}

// builder holds Create's open namespace handles.
type builder struct {
	c    *cluster
	spec testbed.Spec
	open []*ns
}

func (b *builder) step(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.c.p.hook != nil {
		return b.c.p.hook(name)
	}
	return nil
}

func (b *builder) newNS(obj string, setup func() error) (*ns, error) {
	path := filepath.Join(RunDir, netnsName(b.c.id, obj))
	n, err := newNamedNS(path, func(path string) {
		b.c.mu.Lock()
		b.c.netns = append(b.c.netns, path)
		b.c.mu.Unlock()
	}, setup)
	if err != nil {
		return nil, err
	}
	b.open = append(b.open, n)
	b.c.log.Debug("netns created", "path", path)
	return n, nil
}

func (b *builder) build(ctx context.Context) error {
	c, id := b.c, b.c.id
	if err := b.step(ctx, "start"); err != nil {
		return err
	}

	// Fabric: one bridge joining the nodes' uplinks.
	fab, err := b.newNS("fab", nil)
	if err != nil {
		return err
	}
	fabBr := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridgeName, TxQLen: -1, HardwareAddr: fabricMAC(), Flags: net.FlagUp}}
	if err := fab.nl.LinkAdd(fabBr); err != nil {
		return fmt.Errorf("fabric: add bridge: %w", err)
	}
	if err := b.step(ctx, "fabric"); err != nil {
		return err
	}

	// Nodes.
	nodeNS := make([]*ns, b.spec.Nodes)
	nodeBr := make([]int, b.spec.Nodes)
	for i := range b.spec.Nodes {
		nd := &testbed.Node{
			Name:    nodeName(i),
			Index:   i,
			IP:      nodeIP(i),
			PodCIDR: podCIDR(i),
			Gateway: gatewayIP(i),
			Uplink:  uplinkName,
			Bridge:  bridgeName,
		}
		if c.roots.v2 != "" {
			nd.CgroupPath = filepath.Join(c.roots.v2, cgroupTopName(id), nodeCgroupName(i))
		}
		n, err := b.newNS(nd.Name, func() error {
			return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0)
		})
		if err != nil {
			return err
		}
		nd.NetnsPath = n.path
		nodeNS[i] = n
		if nodeBr[i], err = setupNode(n, fab, fabBr.Index, id, nd, b.spec.Nodes); err != nil {
			return fmt.Errorf("node %s: %w", nd.Name, err)
		}
		c.nodes = append(c.nodes, nd)
		if err := b.step(ctx, "node "+nd.Name); err != nil {
			return err
		}
	}

	// Cgroup hierarchies of the run.
	for _, root := range c.roots.list() {
		top := filepath.Join(root, cgroupTopName(id))
		if err := os.Mkdir(top, 0o755); err != nil {
			if errors.Is(err, os.ErrExist) {
				return fmt.Errorf("create cgroup %s: exists (left by a crashed run? remove it with `meshbench down`)", top)
			}
			return fmt.Errorf("create cgroup %s: %w", top, err)
		}
		c.mu.Lock()
		c.cgTops = append(c.cgTops, top)
		c.mu.Unlock()
	}
	if err := b.step(ctx, "cgroups"); err != nil {
		return err
	}

	// Pods.
	perNode := make([]int, b.spec.Nodes)
	for j, ps := range b.spec.Pods {
		i := ps.Node
		k := perNode[i]
		perNode[i]++
		ip := podIP(i, k)
		pod := &testbed.Pod{
			Name:        ps.Name,
			Node:        c.nodes[i].Name,
			NodeIndex:   i,
			IP:          ip,
			MAC:         mac(macPod, ip).String(),
			HostVeth:    hostVethName(id, j),
			PodVeth:     podIfName,
			HostVethMAC: mac(macHost, ip).String(),
		}
		n, err := b.newNS(ps.Name, nil)
		if err != nil {
			return err
		}
		pod.NetnsPath = n.path
		if err := setupPod(n, nodeNS[i], nodeBr[i], hostVethIndex+j, c.nodes[i], pod); err != nil {
			return fmt.Errorf("pod %s: %w", pod.Name, err)
		}
		if c.roots.v2 != "" {
			pod.CgroupPath = filepath.Join(c.roots.v2, cgroupTopName(id), pod.Name)
			if err := os.Mkdir(pod.CgroupPath, 0o755); err != nil {
				return fmt.Errorf("pod %s: create cgroup: %w", pod.Name, err)
			}
		}
		if c.roots.mem != "" {
			pod.MemoryCgroupPath = filepath.Join(c.roots.mem, cgroupTopName(id), pod.Name)
			if err := os.Mkdir(pod.MemoryCgroupPath, 0o755); err != nil {
				return fmt.Errorf("pod %s: create memory cgroup: %w", pod.Name, err)
			}
		}
		c.pods = append(c.pods, pod)
		c.byName[pod.Name] = pod
		if err := b.step(ctx, "pod "+pod.Name); err != nil {
			return err
		}
	}
	if err := b.waitReady(ctx); err != nil {
		return err
	}
	return b.step(ctx, "done")
}

// readyTimeout bounds the wait for every veth to report its carrier.
const readyTimeout = 3 * time.Second

// waitReady waits until every veth of the cluster is operationally up: the
// kernel has then activated its queue and, on a bridge, put its port in the
// forwarding state, so that the first packets are not dropped.
func (b *builder) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(readyTimeout)
	for _, n := range b.open {
		for {
			links, err := n.nl.LinkList()
			if err != nil {
				return fmt.Errorf("netns %s: list links: %w", n.path, err)
			}
			var down []string
			for _, l := range links {
				if l.Type() == "veth" && l.Attrs().OperState != netlink.OperUp {
					down = append(down, l.Attrs().Name)
				}
			}
			if len(down) == 0 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("netns %s: %v not up after %v", n.path, down, readyTimeout)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(2 * time.Millisecond):
			}
		}
	}
	return nil
}

// setupNode makes the node's pod bridge and uplink, and routes to the other
// nodes' pods. It returns the bridge's index.
func setupNode(n, fab *ns, fabBr int, id string, nd *testbed.Node, nodes int) (int, error) {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridgeName, TxQLen: -1, HardwareAddr: mac(macBridge, nd.Gateway), Flags: net.FlagUp}}
	if err := n.nl.LinkAdd(br); err != nil {
		return 0, fmt.Errorf("add bridge: %w", err)
	}
	if err := n.nl.AddrAdd(br, &netlink.Addr{IPNet: ipNet(nd.Gateway, nd.PodCIDR.Bits())}); err != nil {
		return 0, fmt.Errorf("address bridge: %w", err)
	}
	peer := fabricVethName(id, nd.Index)
	up := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{
			Name: uplinkName, Index: uplinkIndex, TxQLen: -1, HardwareAddr: mac(macUplink, nd.IP), Flags: net.FlagUp,
			NumTxQueues: 1, NumRxQueues: 1,
		},
		PeerName:         peer,
		PeerTxQLen:       -1,
		PeerHardwareAddr: mac(macFabric, nd.IP),
		PeerNamespace:    fab.peer(),
	}
	if err := n.nl.LinkAdd(up); err != nil {
		return 0, fmt.Errorf("add uplink: %w", err)
	}
	if err := n.nl.AddrAdd(up, &netlink.Addr{IPNet: ipNet(nd.IP, 24)}); err != nil {
		return 0, fmt.Errorf("address uplink: %w", err)
	}
	fl, err := fab.nl.LinkByName(peer)
	if err != nil {
		return 0, fmt.Errorf("find fabric end %s: %w", peer, err)
	}
	if err := fab.nl.LinkSetMasterByIndex(fl, fabBr); err != nil {
		return 0, fmt.Errorf("attach %s to fabric bridge: %w", peer, err)
	}
	if err := fab.nl.LinkSetUp(fl); err != nil {
		return 0, fmt.Errorf("set %s up: %w", peer, err)
	}
	if err := setTxChecksum(n.ctl, uplinkName, false); err != nil {
		return 0, err
	}
	if err := setTxChecksum(fab.ctl, peer, false); err != nil {
		return 0, err
	}
	for j := range nodes {
		if j == nd.Index {
			continue
		}
		r := &netlink.Route{LinkIndex: up.Index, Dst: prefixNet(podCIDR(j)), Gw: net.IP(nodeIP(j).AsSlice())}
		if err := n.nl.RouteAdd(r); err != nil {
			return 0, fmt.Errorf("route %s via %s: %w", podCIDR(j), nodeIP(j), err)
		}
		if err := staticNeighbor(n, up.Index, nodeIP(j), mac(macUplink, nodeIP(j))); err != nil {
			return 0, err
		}
	}
	return br.Index, nil
}

// setupPod joins the pod to its node's bridge with a single-queue veth pair
// and routes only the testbed's range through the node: no default route.
func setupPod(n, node *ns, bridge, index int, nd *testbed.Node, pod *testbed.Pod) error {
	hostMAC, _ := net.ParseMAC(pod.HostVethMAC)
	podMAC, _ := net.ParseMAC(pod.MAC)
	v := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{
			Name: pod.HostVeth, Index: index, TxQLen: -1, HardwareAddr: hostMAC, Flags: net.FlagUp,
			MasterIndex: bridge, NumTxQueues: 1, NumRxQueues: 1,
		},
		PeerName:         pod.PodVeth,
		PeerTxQLen:       -1,
		PeerHardwareAddr: podMAC,
		PeerNamespace:    n.peer(),
	}
	if err := node.nl.LinkAdd(v); err != nil {
		return fmt.Errorf("add veth %s: %w", pod.HostVeth, err)
	}
	if err := setTxChecksum(node.ctl, pod.HostVeth, false); err != nil {
		return err
	}
	eth, err := n.nl.LinkByName(pod.PodVeth)
	if err != nil {
		return fmt.Errorf("find %s: %w", pod.PodVeth, err)
	}
	if err := n.nl.AddrAdd(eth, &netlink.Addr{IPNet: ipNet(pod.IP, nd.PodCIDR.Bits())}); err != nil {
		return fmt.Errorf("address %s: %w", pod.PodVeth, err)
	}
	if err := n.nl.LinkSetUp(eth); err != nil {
		return fmt.Errorf("set %s up: %w", pod.PodVeth, err)
	}
	r := &netlink.Route{LinkIndex: eth.Attrs().Index, Dst: prefixNet(podSupernet), Gw: net.IP(nd.Gateway.AsSlice())}
	if err := n.nl.RouteAdd(r); err != nil {
		return fmt.Errorf("route %s via %s: %w", podSupernet, nd.Gateway, err)
	}
	if err := staticNeighbor(n, eth.Attrs().Index, nd.Gateway, mac(macBridge, nd.Gateway)); err != nil {
		return err
	}
	if err := staticNeighbor(node, bridge, pod.IP, podMAC); err != nil {
		return err
	}
	return setTxChecksum(n.ctl, pod.PodVeth, false)
}

// staticNeighbor adds a permanent neighbor entry for ip on the link: the
// testbed knows every MAC, so its routers (a pod's gateway, a node's pods
// and the other nodes) need no ARP. The kernel's neighbor table is one for
// every namespace, and its garbage collector's hard limit (gc_thresh3,
// 1024 by default) counts dynamic entries only: at 512 pods the dynamic
// ones overflowed it and the last pods' connections failed.
func staticNeighbor(n *ns, link int, ip netip.Addr, hw net.HardwareAddr) error {
	nb := &netlink.Neigh{LinkIndex: link, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, IP: net.IP(ip.AsSlice()), HardwareAddr: hw}
	if err := n.nl.NeighSet(nb); err != nil {
		return fmt.Errorf("neighbor %s on link %d: %w", ip, link, err)
	}
	return nil
}

// RunID returns the cluster's run id.
func (c *cluster) RunID() string { return c.id }

// Nodes returns the nodes in index order.
func (c *cluster) Nodes() []*testbed.Node { return slices.Clone(c.nodes) }

// Pods returns the pods in spec order.
func (c *cluster) Pods() []*testbed.Pod { return slices.Clone(c.pods) }

// Pod returns the named pod or nil.
func (c *cluster) Pod(name string) *testbed.Pod { return c.byName[name] }

// Namespaces returns the fabric's, the nodes' and the pods' netns paths.
func (c *cluster) Namespaces() []string {
	out := []string{filepath.Join(RunDir, fabricName(c.id))}
	for _, n := range c.nodes {
		out = append(out, n.NetnsPath)
	}
	for _, p := range c.pods {
		out = append(out, p.NetnsPath)
	}
	return out
}

// Processes returns the started processes that have not exited.
func (c *cluster) Processes() []*testbed.Process {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*testbed.Process
	for _, p := range c.procs {
		if !p.Exited() {
			out = append(out, p)
		}
	}
	return out
}

// Start starts spec in the pod's network namespace, cloned straight into its
// cgroup v2 and moved into its memory cgroup right after.
func (c *cluster) Start(ctx context.Context, pod *testbed.Pod, spec testbed.ProcessSpec) (*testbed.Process, error) {
	if pod == nil || c.byName[pod.Name] == nil {
		return nil, fmt.Errorf("start %s: pod not in cluster %s", spec.Name, c.id)
	}
	p := c.byName[pod.Name]
	return c.start(ctx, p.NetnsPath, p.CgroupPath, p.MemoryCgroupPath, p.Name, p.Node, spec)
}

// StartOnNode starts spec in the node's network namespace, in the run's
// node-<i> cgroups.
func (c *cluster) StartOnNode(ctx context.Context, node *testbed.Node, spec testbed.ProcessSpec) (*testbed.Process, error) {
	if node == nil || node.Index < 0 || node.Index >= len(c.nodes) || c.nodes[node.Index].Name != node.Name {
		return nil, fmt.Errorf("start %s: node not in cluster %s", spec.Name, c.id)
	}
	nd := c.nodes[node.Index]
	var v2, mem string
	for _, root := range c.roots.list() {
		dir := filepath.Join(root, cgroupTopName(c.id), nodeCgroupName(nd.Index))
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("start %s on node %s: create cgroup: %w", spec.Name, nd.Name, err)
		}
		if root == c.roots.v2 {
			v2 = dir
		} else {
			mem = dir
		}
	}
	return c.start(ctx, nd.NetnsPath, v2, mem, "", nd.Name, spec)
}

func (c *cluster) start(ctx context.Context, netnsPath, v2, mem, pod, node string, spec testbed.ProcessSpec) (*testbed.Process, error) {
	where := "node " + node
	if pod != "" {
		where = "pod " + pod
	}
	if len(spec.Args) == 0 {
		return nil, fmt.Errorf("start %s in %s: no command", spec.Name, where)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", spec.Name, where, err)
	}
	c.mu.Lock()
	destroyed := c.destroyed
	c.mu.Unlock()
	if destroyed {
		return nil, fmt.Errorf("start %s in %s: cluster %s destroyed", spec.Name, where, c.id)
	}
	cmd := exec.Command(spec.Args[0], spec.Args[1:]...)
	cmd.Env = spec.Env
	cmd.Stdout, cmd.Stderr = spec.Stdout, spec.Stderr
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if spec.UID != 0 {
		attr.Credential = &syscall.Credential{Uid: spec.UID, Gid: spec.GID}
	}
	if v2 != "" {
		fd, err := unix.Open(v2, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("start %s in %s: open cgroup: %w", spec.Name, where, err)
		}
		defer unix.Close(fd)
		attr.UseCgroupFD, attr.CgroupFD = true, fd
	}
	cmd.SysProcAttr = attr
	// The child is forked from a thread inside the namespace and inherits it.
	var proc *testbed.Process
	err := spawnIn(netnsPath, func() error {
		var err error
		proc, err = testbed.StartCmd(cmd, spec.Name, spec.Role, pod, node)
		return err
	})
	if err == nil && mem != "" {
		// A process that ended already (a short command) has no memory left
		// to account: the kernel answers ESRCH, which is no failure.
		if err = writePID(mem, proc.PID); errors.Is(err, syscall.ESRCH) {
			err = nil
		}
	}
	if err != nil {
		if proc != nil {
			_ = proc.Signal(syscall.SIGKILL)
			<-proc.Done()
		}
		return nil, fmt.Errorf("start %s in %s: %w", spec.Name, where, err)
	}
	c.mu.Lock()
	c.procs = append(c.procs, proc)
	c.mu.Unlock()
	c.log.Debug("process started", "name", spec.Name, "where", where, "pid", proc.PID)
	return proc, nil
}

// Destroy stops the processes (SIGTERM, then SIGKILL), kills whatever else
// runs in the cluster's cgroups and namespaces, and removes them.
func (c *cluster) Destroy(ctx context.Context) error {
	c.mu.Lock()
	c.destroyed = true
	procs := c.procs
	c.procs = nil
	c.mu.Unlock()

	errs := []error{testbed.StopAll(ctx, procs), c.teardown(context.WithoutCancel(ctx))}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("destroy cluster %s: %w", c.id, err)
	}
	c.log.Debug("cluster destroyed")
	return nil
}

// teardown removes the cgroups and namespaces made so far, killing what
// runs in them. What it cannot remove stays listed for another call.
func (c *cluster) teardown(ctx context.Context) error {
	c.mu.Lock()
	paths, tops := slices.Clone(c.netns), slices.Clone(c.cgTops)
	c.mu.Unlock()

	var errs []error
	var keepTops, keepNS []string
	for _, top := range tops {
		if _, err := removeCgroupTree(ctx, top); err != nil {
			errs = append(errs, err)
			keepTops = append(keepTops, top)
		}
	}
	if _, err := killNetnsProcs(paths); err != nil {
		errs = append(errs, err)
	}
	for i := len(paths) - 1; i >= 0; i-- {
		if err := deleteNS(paths[i]); err != nil {
			errs = append(errs, err)
			keepNS = append(keepNS, paths[i])
			continue
		}
		c.log.Debug("netns removed", "path", paths[i])
	}
	slices.Reverse(keepNS)
	c.mu.Lock()
	c.netns, c.cgTops = keepNS, keepTops
	c.mu.Unlock()
	return errors.Join(errs...)
}
