package afxdp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/internal/nsutil"
)

// readyTimeout bounds how long Install waits for a forwarder's /stats.
const readyTimeout = 15 * time.Second

// Install implements datapaths.Datapath: it starts one forwarder on every
// node and waits until each has attached its XDP programs and opened its
// sockets.
func (d *Datapath) Install(ctx context.Context, env *datapaths.Env) (err error) {
	d.env = env
	d.last = nil
	if len(env.Exec) == 0 {
		return fmt.Errorf("datapath %s: no command to run the forwarder with (Env.Exec)", Name)
	}
	if err := probeAFXDP(); err != nil {
		return err
	}
	for _, n := range env.Cluster.Nodes() {
		if n.Bridge == "" || n.Uplink == "" {
			return fmt.Errorf("datapath %s: node %s has no pod bridge and uplink of the embedded testbed's (its forwarder owns the node's L2 between them; on Kubernetes the CNI does): %w",
				Name, n.Name, datapaths.ErrNotSupported)
		}
	}
	defer datapaths.UndoOnError(ctx, &err, d.Uninstall)
	// Pods must send full checksums: a frame the forwarder copies carries
	// no checksum-offload state, so a partial checksum would arrive as a
	// bad one.
	for _, p := range env.Cluster.Pods() {
		n := env.Cluster.Nodes()[p.NodeIndex]
		if err := txChecksumOff(p.NetnsPath, p.PodVeth); err != nil {
			return fmt.Errorf("datapath %s: pod %s: %w", Name, p.Name, err)
		}
		if err := txChecksumOff(n.NetnsPath, p.HostVeth); err != nil {
			return fmt.Errorf("datapath %s: node %s: %w", Name, n.Name, err)
		}
	}
	cfgs, err := Configs(env)
	if err != nil {
		return fmt.Errorf("datapath %s: %w", Name, err)
	}
	d.nodes, d.cfgs = env.Cluster.Nodes(), cfgs
	d.procs, d.logs = make([]*testbed.Process, len(d.nodes)), make([]*tailBuffer, len(d.nodes))
	for i := range d.nodes {
		if err := d.start(ctx, i); err != nil {
			return err
		}
	}
	for i, n := range d.nodes {
		if err := waitReady(ctx, n, d.procs[i], d.logs[i]); err != nil {
			return err
		}
	}
	if env.Logger != nil {
		env.Logger.Info("afxdp forwarders ready", "nodes", len(d.nodes))
	}
	return nil
}

// start starts the forwarder of node i.
func (d *Datapath) start(ctx context.Context, i int) error {
	n := d.nodes[i]
	raw, err := json.Marshal(d.cfgs[i])
	if err != nil {
		return fmt.Errorf("datapath %s: %w", Name, err)
	}
	logs := &tailBuffer{}
	args := append(append([]string{}, d.env.Exec...), "forwarder", "--config", string(raw))
	p, err := d.env.Cluster.StartOnNode(ctx, n, testbed.ProcessSpec{
		Name: "forwarder-" + n.Name, Role: results.RoleDatapath, Args: args, Stdout: logs, Stderr: logs,
	})
	if err != nil {
		return fmt.Errorf("start forwarder on node %s: %w", n.Name, err)
	}
	d.procs[i], d.logs[i] = p, logs
	return nil
}

// RestartProcess implements datapaths.ProcessRestarter: it starts the
// forwarder that replaces killed on killed's node and waits until it has
// attached its programs and opened its sockets. (The killed forwarder's
// XDP links and sockets closed with it.)
func (d *Datapath) RestartProcess(ctx context.Context, killed *testbed.Process) error {
	i := slices.Index(d.procs, killed)
	if i < 0 {
		return fmt.Errorf("datapath %s: %s (pid %d) is not one of its forwarders", Name, killed.Name, killed.PID)
	}
	if !killed.Exited() {
		return fmt.Errorf("datapath %s: forwarder on node %s (pid %d) still runs", Name, d.nodes[i].Name, killed.PID)
	}
	if err := d.start(ctx, i); err != nil {
		return err
	}
	return waitReady(ctx, d.nodes[i], d.procs[i], d.logs[i])
}

// txChecksumOff turns transmit checksum offload off on iface in the
// network namespace at netnsPath (ethtool -K iface tx off).
func txChecksumOff(netnsPath, iface string) error {
	if len(iface) >= unix.IFNAMSIZ {
		return fmt.Errorf("interface name %q too long", iface)
	}
	return nsutil.Do(netnsPath, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("ethtool socket: %w", err)
		}
		defer unix.Close(fd)
		ev := struct{ cmd, data uint32 }{cmd: unix.ETHTOOL_STXCSUM}
		var ifr struct {
			name [unix.IFNAMSIZ]byte
			data unsafe.Pointer
			_    [16]byte
		}
		copy(ifr.name[:], iface)
		ifr.data = unsafe.Pointer(&ev)
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
		runtime.KeepAlive(&ev)
		if errno != 0 {
			return fmt.Errorf("turn tx checksum offload off on %s: %w", iface, errno)
		}
		return nil
	})
}

// probeAFXDP returns ErrNotSupported when the kernel has no AF_XDP.
func probeAFXDP() error {
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("datapath %s: open AF_XDP socket: %w: %w", Name, err, datapaths.ErrNotSupported)
	}
	return unix.Close(fd)
}

func waitReady(ctx context.Context, n *testbed.Node, p *testbed.Process, logs *tailBuffer) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var last error
	for {
		if p.Exited() {
			return fmt.Errorf("forwarder on node %s exited (%v): %s", n.Name, p.Err(), logs.String())
		}
		var st Stats
		last = datapaths.GetJSON(ctx, n.Netns(), AdminAddr, "/stats", &st)
		if last == nil && st.Ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("forwarder on node %s not ready: %v (%w): %s", n.Name, last, ctx.Err(), logs.String())
		case <-p.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Configs derives every node's forwarder config from env: every pod of the
// cluster is meshed; every service is resolved by VIP.
func Configs(env *datapaths.Env) ([]*Config, error) {
	nodes := env.Cluster.Nodes()
	base := Config{}
	for _, n := range nodes {
		nc := NodeConfig{Name: n.Name, Index: n.Index, PodCIDR: n.PodCIDR, Gateway: n.Gateway, Uplink: n.Uplink}
		err := nsutil.Do(n.NetnsPath, func() error {
			up, err := netlink.LinkByName(n.Uplink)
			if err != nil {
				return fmt.Errorf("find uplink %s: %w", n.Uplink, err)
			}
			br, err := netlink.LinkByName(n.Bridge)
			if err != nil {
				return fmt.Errorf("find bridge %s: %w", n.Bridge, err)
			}
			nc.UplinkMAC, nc.BridgeMAC = up.Attrs().HardwareAddr.String(), br.Attrs().HardwareAddr.String()
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name, err)
		}
		base.Nodes = append(base.Nodes, nc)
	}
	for _, p := range env.Cluster.Pods() {
		base.Pods = append(base.Pods, PodConfig{Name: p.Name, Node: p.NodeIndex, IP: p.IP, MAC: p.MAC, HostVeth: p.HostVeth})
	}
	for _, s := range env.Services {
		sc := ServiceConfig{Name: s.Name, VIP: s.VIP, Port: uint16(s.Port)}
		for _, b := range s.Backends {
			sc.Backends = append(sc.Backends, netipAddrPort(b, s.Port))
		}
		base.Services = append(base.Services, sc)
	}
	out := make([]*Config, len(nodes))
	for i := range nodes {
		c := base
		c.Node = i
		if err := c.Validate(); err != nil {
			return nil, err
		}
		out[i] = &c
	}
	return out, nil
}

// Uninstall implements datapaths.Datapath: it stops the forwarders (which
// detach their XDP programs and close their sockets) and checks that no
// XDP program is left on any pod's host veth.
func (d *Datapath) Uninstall(ctx context.Context) error {
	var errs []error
	started := slices.ContainsFunc(d.procs, func(p *testbed.Process) bool { return p != nil })
	for _, p := range d.procs {
		if p == nil {
			continue
		}
		if err := p.Stop(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	d.procs, d.logs = nil, nil
	if started {
		for _, p := range d.env.Cluster.Pods() {
			n := d.env.Cluster.Nodes()[p.NodeIndex]
			attached, err := XDPAttached(n.NetnsPath, p.HostVeth)
			if err != nil {
				errs = append(errs, err)
			} else if attached {
				errs = append(errs, fmt.Errorf("xdp program still attached to %s on node %s", p.HostVeth, n.Name))
			}
		}
	}
	return errors.Join(errs...)
}

// XDPAttached reports whether an XDP program is attached to iface in the
// network namespace at netnsPath.
func XDPAttached(netnsPath, iface string) (bool, error) {
	var attached bool
	err := nsutil.Do(netnsPath, func() error {
		l, err := netlink.LinkByName(iface)
		if err != nil {
			return fmt.Errorf("find %s: %w", iface, err)
		}
		x := l.Attrs().Xdp
		attached = x != nil && (x.Attached || x.ProgId != 0)
		return nil
	})
	return attached, err
}
