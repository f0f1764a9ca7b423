package netns_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/harness/testbed/netns"
	"github.com/meshbench/meshbench/harness/testbed/testutil"
	"github.com/meshbench/meshbench/internal/nsutil"
)

func TestMain(m *testing.M) { os.Exit(testutil.TestMainLeakCheck(m)) }

// spec returns nodes × perNode pods named n<i>-p<k>.
func spec(id string, nodes, perNode int) testbed.Spec {
	s := testbed.Spec{RunID: id, Nodes: nodes}
	for i := range nodes {
		for k := range perNode {
			s.Pods = append(s.Pods, testbed.PodSpec{Name: fmt.Sprintf("n%d-p%d", i, k), Node: i})
		}
	}
	return s
}

// newCluster creates a cluster destroyed (and leak-checked) when t ends.
func newCluster(t *testing.T, nodes, perNode int) testbed.Cluster {
	t.Helper()
	testutil.Privileged(t)
	id := testutil.NewRunID(t)
	c, err := netns.New(netns.Options{}).Create(t.Context(), spec(id, nodes, perNode))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Destroy(context.Background()); err != nil {
			t.Errorf("Destroy: %v", err)
		}
	})
	return c
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// roundTrip listens in to's netns, connects from from's netns, echoes a
// message and returns the source address the server saw.
func roundTrip(t *testing.T, from, to *testbed.Pod) netip.Addr {
	t.Helper()
	l, err := nsutil.Listen(to.NetnsPath, "tcp4", netip.AddrPortFrom(to.IP, 0).String())
	if err != nil {
		t.Fatalf("listen in %s: %v", to.Name, err)
	}
	defer l.Close()
	seen := make(chan netip.Addr, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			seen <- netip.Addr{}
			return
		}
		defer c.Close()
		seen <- c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
		_, _ = io.Copy(c, c)
	}()
	ctx := ctxTimeout(t, 5*time.Second)
	c, err := nsutil.Dial(ctx, from.NetnsPath, "tcp4", l.Addr().String())
	if err != nil {
		t.Fatalf("dial %s -> %s (%s): %v", from.Name, to.Name, l.Addr(), err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	msg := []byte("hello " + to.Name)
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if !bytes.Equal(buf, msg) {
		t.Fatalf("echo = %q, want %q", buf, msg)
	}
	return <-seen
}

func TestConnectivity(t *testing.T) {
	c := newCluster(t, 2, 2)
	tests := []struct{ name, from, to string }{
		{"same node", "n0-p0", "n0-p1"},
		{"same node reverse", "n1-p1", "n1-p0"},
		{"cross node", "n0-p0", "n1-p0"},
		{"cross node reverse", "n1-p1", "n0-p1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from, to := c.Pod(tt.from), c.Pod(tt.to)
			if src := roundTrip(t, from, to); src != from.IP {
				t.Errorf("server saw source %v, want the client pod's %v (no NAT)", src, from.IP)
			}
		})
	}
	// The cluster is ready when Create returns: not even the first SYN
	// was lost (a port not yet forwarding would drop it).
	for _, pod := range c.Pods() {
		if n := retransSegs(t, pod.NetnsPath); n != 0 {
			t.Errorf("pod %s retransmitted %d TCP segments", pod.Name, n)
		}
	}
}

// retransSegs reads the TCP RetransSegs counter of a namespace.
func retransSegs(t *testing.T, path string) int {
	t.Helper()
	var snmp []byte
	if err := nsutil.Do(path, func() (err error) {
		snmp, err = os.ReadFile("/proc/thread-self/net/snmp")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var head []string
	for _, line := range strings.Split(string(snmp), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Tcp:" {
			continue
		}
		if head == nil {
			head = f
			continue
		}
		if i := slices.Index(head, "RetransSegs"); i > 0 && i < len(f) {
			n, err := strconv.Atoi(f[i])
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no Tcp RetransSegs in %s's snmp", path)
	return 0
}

func TestNoRouteOutsideTestbed(t *testing.T) {
	c := newCluster(t, 1, 1)
	pod := c.Pods()[0]
	// Connecting without a route fails in connect(2) itself: nothing is sent.
	for _, addr := range []string{"10.0.0.1:80", "192.168.1.1:80", "172.16.0.1:80"} {
		t.Run(addr, func(t *testing.T) {
			conn, err := nsutil.Dial(ctxTimeout(t, 2*time.Second), pod.NetnsPath, "tcp4", addr)
			if err == nil {
				conn.Close()
				t.Fatalf("dial %s from a pod succeeded; want no route", addr)
			}
			if !errors.Is(err, syscall.ENETUNREACH) {
				t.Fatalf("dial %s: %v, want ENETUNREACH", addr, err)
			}
		})
	}
	err := nsutil.Do(pod.NetnsPath, func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer h.Close()
		routes, err := h.RouteList(nil, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, r := range routes {
			if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
				t.Errorf("pod has a default route: %v", r)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// inNS runs fn with a netlink handle and a control socket in the namespace.
func inNS(t *testing.T, path string, fn func(h *netlink.Handle, ctl int) error) {
	t.Helper()
	err := nsutil.Do(path, func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer h.Close()
		ctl, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(ctl)
		return fn(h, ctl)
	})
	if err != nil {
		t.Fatalf("in %s: %v", path, err)
	}
}

// checkVeth checks one veth end: its MAC, one queue each way, no tx
// checksum offload.
func checkVeth(t *testing.T, h *netlink.Handle, ctl int, name, mac string) netlink.Link {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Errorf("link %s: %v", name, err)
		return nil
	}
	a := l.Attrs()
	if mac != "" && a.HardwareAddr.String() != mac {
		t.Errorf("%s MAC = %s, want %s", name, a.HardwareAddr, mac)
	}
	if a.NumTxQueues != 1 || a.NumRxQueues != 1 {
		t.Errorf("%s has %d tx / %d rx queues, want 1 / 1", name, a.NumTxQueues, a.NumRxQueues)
	}
	if a.Flags&net.FlagUp == 0 {
		t.Errorf("%s is down", name)
	}
	on, err := netns.TxChecksum(ctl, name)
	if err != nil {
		t.Errorf("%s tx checksum: %v", name, err)
	} else if on {
		t.Errorf("%s tx checksum offload is on", name)
	}
	return l
}

func TestHandles(t *testing.T) {
	c := newCluster(t, 2, 2)
	id := c.RunID()
	if got, want := len(c.Namespaces()), 1+2+4; got != want {
		t.Errorf("Namespaces() has %d paths, want %d", got, want)
	}
	for _, p := range c.Namespaces() {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("namespace %s: %v", p, err)
		}
	}
	for i, nd := range c.Nodes() {
		t.Run(nd.Name, func(t *testing.T) {
			if want := netip.AddrFrom4([4]byte{198, 19, 0, byte(i + 1)}); nd.IP != want {
				t.Errorf("IP = %v, want %v", nd.IP, want)
			}
			if want := netip.MustParsePrefix(fmt.Sprintf("198.18.%d.0/24", i)); nd.PodCIDR != want || !want.Contains(nd.Gateway) {
				t.Errorf("PodCIDR %v, Gateway %v", nd.PodCIDR, nd.Gateway)
			}
			if want := filepath.Join(netns.RunDir, "mb-"+id+"-n"+strconv.Itoa(i)); nd.NetnsPath != want {
				t.Errorf("NetnsPath = %s, want %s", nd.NetnsPath, want)
			}
			inNS(t, nd.NetnsPath, func(h *netlink.Handle, ctl int) error {
				checkVeth(t, h, ctl, nd.Uplink, "")
				b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
				if err != nil || strings.TrimSpace(string(b)) != "1" {
					t.Errorf("ip_forward = %q (%v), want 1", b, err)
				}
				return nil
			})
		})
	}
	for _, pod := range c.Pods() {
		t.Run(pod.Name, func(t *testing.T) {
			nd := c.Nodes()[pod.NodeIndex]
			if pod.Node != nd.Name || !nd.PodCIDR.Contains(pod.IP) {
				t.Errorf("pod %+v does not match node %+v", pod, nd)
			}
			if pod.PodVeth != "eth0" || len(pod.HostVeth) > 15 || !strings.Contains(pod.HostVeth, id) {
				t.Errorf("PodVeth %q, HostVeth %q", pod.PodVeth, pod.HostVeth)
			}
			for _, cg := range []string{pod.CgroupPath, pod.MemoryCgroupPath} {
				if cg == "" {
					continue
				}
				if !strings.HasSuffix(cg, "/meshbench-"+id+"/"+pod.Name) {
					t.Errorf("cgroup %s not under meshbench-%s", cg, id)
				}
				if _, err := os.Stat(filepath.Join(cg, "cgroup.procs")); err != nil {
					t.Errorf("cgroup: %v", err)
				}
			}
			inNS(t, pod.NetnsPath, func(h *netlink.Handle, ctl int) error {
				l := checkVeth(t, h, ctl, pod.PodVeth, pod.MAC)
				if l == nil {
					return nil
				}
				addrs, err := h.AddrList(l, netlink.FAMILY_V4)
				if err != nil || len(addrs) != 1 || addrs[0].IP.String() != pod.IP.String() {
					t.Errorf("eth0 addresses %v (%v), want %v", addrs, err, pod.IP)
				}
				return nil
			})
			inNS(t, nd.NetnsPath, func(h *netlink.Handle, ctl int) error {
				l := checkVeth(t, h, ctl, pod.HostVeth, pod.HostVethMAC)
				br, err := h.LinkByName(nd.Bridge)
				if err != nil {
					return err
				}
				if l != nil && l.Attrs().MasterIndex != br.Attrs().Index {
					t.Errorf("%s is not attached to %s", pod.HostVeth, nd.Bridge)
				}
				return nil
			})
		})
	}
	// ip netns exec finds the namespaces by name.
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Logf("no ip(8) here, not checking `ip netns exec`: %v", err)
		return
	}
	pod := c.Pods()[0]
	out, err := exec.Command(ip, "netns", "exec", filepath.Base(pod.NetnsPath), ip, "-4", "-o", "addr", "show", "dev", "eth0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), pod.IP.String()+"/24") {
		t.Errorf("ip netns exec: %v: %s", err, out)
	}
}

// cgroupOf returns /proc/pid/cgroup's path for the v2 hierarchy ("0::") or a
// v1 controller.
func cgroupOf(t *testing.T, pid int, controller string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatalf("read cgroup of %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if (controller == "" && parts[0] == "0") || (controller != "" && slices.Contains(strings.Split(parts[1], ","), controller)) {
			return parts[2]
		}
	}
	return ""
}

func nsIno(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return st.Ino
}

func TestStart(t *testing.T) {
	c := newCluster(t, 2, 1)
	id := c.RunID()
	pod := c.Pod("n1-p0")
	ctx := t.Context()

	t.Run("long-running in pod", func(t *testing.T) {
		p, err := c.Start(ctx, pod, testbed.ProcessSpec{Name: "sleep", Role: "server", Args: []string{"sleep", "30"}})
		if err != nil {
			t.Fatal(err)
		}
		if p.Pod != pod.Name || p.Node != pod.Node || p.PID <= 0 {
			t.Errorf("process %+v", p)
		}
		if got, want := nsIno(t, fmt.Sprintf("/proc/%d/ns/net", p.PID)), nsIno(t, pod.NetnsPath); got != want {
			t.Errorf("process netns inode %d, want the pod's %d", got, want)
		}
		if pod.CgroupPath != "" {
			if got, want := cgroupOf(t, p.PID, ""), "/meshbench-"+id+"/"+pod.Name; got != want {
				t.Errorf("cgroup v2 %q, want %q", got, want)
			}
		}
		if pod.MemoryCgroupPath != "" {
			if got, want := cgroupOf(t, p.PID, "memory"), "/meshbench-"+id+"/"+pod.Name; got != want {
				t.Errorf("memory cgroup %q, want %q", got, want)
			}
		}
		if !slices.Contains(c.Processes(), p) {
			t.Errorf("Processes() does not list the process")
		}
		if err := p.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(c.Processes(), p) {
			t.Errorf("Processes() still lists the stopped process")
		}
	})

	t.Run("survives the end of pooled threads", func(t *testing.T) {
		p, err := c.Start(ctx, pod, testbed.ProcessSpec{Name: "sleep", Args: []string{"sleep", "30"}})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Stop(ctx)
		// A goroutine that exits while locked ends its thread; Pdeathsig
		// must not fire for a child that was forked from such a thread.
		for range 64 {
			var wg sync.WaitGroup
			for range 4 {
				wg.Add(1)
				go func() {
					runtime.LockOSThread()
					wg.Done()
				}()
			}
			wg.Wait()
			runtime.Gosched()
		}
		time.Sleep(100 * time.Millisecond)
		if p.Exited() {
			t.Fatalf("process killed when pooled threads ended: %v", p.Err())
		}
	})

	t.Run("sees its own namespace and cgroup", func(t *testing.T) {
		var out bytes.Buffer
		p, err := c.Start(ctx, pod, testbed.ProcessSpec{
			Name: "sh", Args: []string{"/bin/sh", "-c", "readlink /proc/self/ns/net; cat /proc/self/cgroup"}, Stdout: &out,
		})
		if err != nil {
			t.Fatal(err)
		}
		<-p.Done()
		if p.Err() != nil {
			t.Fatalf("sh: %v", p.Err())
		}
		if want := fmt.Sprintf("net:[%d]\n", nsIno(t, pod.NetnsPath)); !strings.HasPrefix(out.String(), want) {
			t.Errorf("output %q, want it to start with %q", out.String(), want)
		}
		if pod.CgroupPath != "" && !strings.Contains(out.String(), "0::/meshbench-"+id+"/"+pod.Name+"\n") {
			t.Errorf("output %q lacks the pod's cgroup v2", out.String())
		}
	})

	t.Run("as another user", func(t *testing.T) {
		var out bytes.Buffer
		p, err := c.Start(ctx, pod, testbed.ProcessSpec{Name: "id", Args: []string{"/bin/sh", "-c", "id -u; id -g"}, UID: 65534, GID: 65534, Stdout: &out})
		if err != nil {
			t.Fatal(err)
		}
		<-p.Done()
		if got := out.String(); got != "65534\n65534\n" {
			t.Errorf("id -u; id -g = %q, want 65534 twice", got)
		}
	})

	t.Run("on node", func(t *testing.T) {
		nd := c.Nodes()[1]
		p, err := c.StartOnNode(ctx, nd, testbed.ProcessSpec{Name: "proxy", Args: []string{"sleep", "30"}})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := nsIno(t, fmt.Sprintf("/proc/%d/ns/net", p.PID)), nsIno(t, nd.NetnsPath); got != want {
			t.Errorf("process netns inode %d, want the node's %d", got, want)
		}
		if pod.CgroupPath != "" {
			if got, want := cgroupOf(t, p.PID, ""), "/meshbench-"+id+"/node-1"; got != want {
				t.Errorf("cgroup v2 %q, want %q", got, want)
			}
		}
		// Left running: Destroy must stop it.
	})

	t.Run("errors", func(t *testing.T) {
		if _, err := c.Start(ctx, &testbed.Pod{Name: "nope"}, testbed.ProcessSpec{Args: []string{"true"}}); err == nil {
			t.Error("Start in an unknown pod succeeded")
		}
		if _, err := c.Start(ctx, pod, testbed.ProcessSpec{}); err == nil {
			t.Error("Start without a command succeeded")
		}
		if _, err := c.Start(ctx, pod, testbed.ProcessSpec{Args: []string{"/nonexistent/binary"}}); err == nil {
			t.Error("Start of a missing binary succeeded")
		}
	})
}

func TestDestroy(t *testing.T) {
	testutil.Privileged(t)
	id := testutil.NewRunID(t)
	ctx := t.Context()
	c, err := netns.New(netns.Options{}).Create(ctx, spec(id, 2, 2))
	if err != nil {
		t.Fatal(err)
	}
	var procs []*testbed.Process
	for _, pod := range c.Pods() {
		// A shell that ignores SIGTERM makes Destroy fall back to SIGKILL.
		p, err := c.Start(ctx, pod, testbed.ProcessSpec{Name: "stubborn", Args: []string{"/bin/sh", "-c", "trap '' TERM; sleep 30 & wait"}})
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
	}
	if left, _ := netns.Leftovers(id); len(left) == 0 {
		t.Fatal("Leftovers finds nothing of a live cluster")
	}
	dctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond) // skip the SIGTERM grace
	defer cancel()
	if err := c.Destroy(dctx); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	for _, p := range procs {
		if !p.Exited() {
			t.Errorf("process %d still running after Destroy", p.PID)
		}
	}
	if left, err := netns.Leftovers(id); err != nil || len(left) > 0 {
		t.Errorf("after Destroy: %v %v", left, err)
	}
	if err := c.Destroy(ctx); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
	if _, err := c.Start(ctx, c.Pods()[0], testbed.ProcessSpec{Args: []string{"true"}}); err == nil {
		t.Error("Start after Destroy succeeded")
	}
}

func TestCreateFailureCleansUp(t *testing.T) {
	testutil.Privileged(t)
	errInjected := errors.New("injected")
	for _, step := range []string{"start", "fabric", "node n0", "node n1", "cgroups", "pod n0-p0", "pod n1-p1", "done"} {
		t.Run(step, func(t *testing.T) {
			id := testutil.NewRunID(t)
			p := netns.New(netns.Options{})
			var steps []string
			netns.SetCreateHook(p, func(s string) error {
				steps = append(steps, s)
				if s == step {
					return errInjected
				}
				return nil
			})
			c, err := p.Create(t.Context(), spec(id, 2, 2))
			if !errors.Is(err, errInjected) {
				if c != nil {
					_ = c.Destroy(context.Background())
				}
				t.Fatalf("Create = %v, want the injected error at step %q (steps %v)", err, step, steps)
			}
			if left, err := netns.Leftovers(id); err != nil || len(left) > 0 {
				t.Errorf("after failed Create: %v %v", left, err)
			}
		})
	}

	t.Run("cancelled", func(t *testing.T) {
		id := testutil.NewRunID(t)
		ctx, cancel := context.WithCancel(t.Context())
		p := netns.New(netns.Options{})
		netns.SetCreateHook(p, func(s string) error {
			if s == "node n0" {
				cancel()
			}
			return nil
		})
		if _, err := p.Create(ctx, spec(id, 2, 1)); !errors.Is(err, context.Canceled) {
			t.Fatalf("Create = %v, want context.Canceled", err)
		}
	})

	t.Run("existing object is not ours to remove", func(t *testing.T) {
		id := testutil.NewRunID(t)
		other := filepath.Join(netns.RunDir, "mb-"+id+"-n1")
		if err := os.MkdirAll(netns.RunDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(other, nil, 0o444); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(other)
		_, err := netns.New(netns.Options{}).Create(t.Context(), spec(id, 2, 1))
		if err == nil || !strings.Contains(err.Error(), "exists") {
			t.Fatalf("Create = %v, want an exists error", err)
		}
		if _, err := os.Stat(other); err != nil {
			t.Errorf("Create's cleanup removed a file it had not made: %v", err)
		}
		os.Remove(other)
	})
}

func TestDownAfterCrash(t *testing.T) {
	testutil.Privileged(t)
	id := testutil.NewRunID(t)
	ctx := t.Context()
	p := netns.New(netns.Options{})
	c, err := p.Create(ctx, spec(id, 2, 1))
	if err != nil {
		t.Fatal(err)
	}
	pod := c.Pods()[1]
	inPod, err := c.Start(ctx, pod, testbed.ProcessSpec{Name: "sleep", Args: []string{"sleep", "30"}})
	if err != nil {
		t.Fatal(err)
	}
	onNode, err := c.StartOnNode(ctx, c.Nodes()[0], testbed.ProcessSpec{Name: "sleep", Args: []string{"sleep", "30"}})
	if err != nil {
		t.Fatal(err)
	}
	// A process in a pod's namespace but in no cgroup of the run.
	stray := exec.Command("sleep", "30")
	stray.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := nsutil.Do(pod.NetnsPath, stray.Start); err != nil {
		t.Fatal(err)
	}
	strayDone := make(chan struct{})
	go func() { _ = stray.Wait(); close(strayDone) }()
	c = nil // The harness "crashed": only the host state is left.

	// Another run must survive this run's Down.
	otherID := testutil.NewRunID(t)
	other, err := p.Create(ctx, spec(otherID, 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Destroy(context.Background())

	removed, err := p.Down(ctx, id)
	if err != nil {
		t.Fatalf("Down: %v", err)
	}
	joined := strings.Join(removed, "\n")
	for _, want := range []string{
		"netns " + filepath.Join(netns.RunDir, "mb-"+id+"-fab"),
		"netns " + pod.NetnsPath,
		fmt.Sprintf("process %d ", stray.Process.Pid),
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("Down's report lacks %q:\n%s", want, joined)
		}
	}
	if pod.CgroupPath != "" && !strings.Contains(joined, "cgroup "+pod.CgroupPath) {
		t.Errorf("Down's report lacks cgroup %s:\n%s", pod.CgroupPath, joined)
	}
	for _, pr := range []*testbed.Process{inPod, onNode} {
		select {
		case <-pr.Done():
		case <-time.After(5 * time.Second):
			t.Errorf("process %d still running after Down", pr.PID)
		}
	}
	select {
	case <-strayDone:
	case <-time.After(5 * time.Second):
		t.Errorf("stray process %d still running after Down", stray.Process.Pid)
	}
	if left, err := netns.Leftovers(id); err != nil || len(left) > 0 {
		t.Errorf("after Down: %v %v", left, err)
	}
	if left, _ := netns.Leftovers(otherID); len(left) == 0 {
		t.Errorf("Down(%s) removed run %s too", id, otherID)
	}
	// Down of a run with nothing left is a no-op.
	if removed, err := p.Down(ctx, id); err != nil || len(removed) > 0 {
		t.Errorf("second Down = %v, %v", removed, err)
	}
	if _, err := p.Down(ctx, "XYZ"); err == nil {
		t.Error("Down of an invalid run id succeeded")
	}
}

func TestCgroupsDisabled(t *testing.T) {
	testutil.Privileged(t)
	id := testutil.NewRunID(t)
	p := netns.New(netns.Options{CgroupRoot: netns.Disabled, MemoryCgroupRoot: netns.Disabled})
	c, err := p.Create(t.Context(), spec(id, 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Destroy(context.Background())
	pod := c.Pods()[0]
	if pod.CgroupPath != "" || pod.MemoryCgroupPath != "" {
		t.Errorf("cgroups %q %q with cgroups disabled", pod.CgroupPath, pod.MemoryCgroupPath)
	}
	pr, err := c.Start(t.Context(), pod, testbed.ProcessSpec{Args: []string{"sleep", "30"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !pr.Exited() {
		t.Error("process still running after Destroy")
	}
}

func BenchmarkCreateDestroy(b *testing.B) {
	testutil.Privileged(b)
	p := netns.New(netns.Options{})
	for b.Loop() {
		id := testutil.RandomRunID()
		c, err := p.Create(b.Context(), spec(id, 2, 4))
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Destroy(context.Background()); err != nil {
			b.Fatal(err)
		}
		if left, err := netns.Leftovers(id); err != nil || len(left) > 0 {
			b.Fatalf("leftovers: %v %v", left, err)
		}
	}
}
