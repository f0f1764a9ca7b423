package afxdp_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/datapaths/afxdp"
	"github.com/meshbench/meshbench/harness/doctor"
	"github.com/meshbench/meshbench/harness/metrics"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/harness/testbed/netns"
	"github.com/meshbench/meshbench/harness/testbed/testutil"
	"github.com/meshbench/meshbench/harness/workload"
	"github.com/meshbench/meshbench/internal/nsutil"
)

// TestMain lets this test binary serve as the forwarder (and the echo and
// load workloads) the datapath starts, and fails on anything a test left
// behind.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		var run func(context.Context, []string, io.Writer, io.Writer) error
		switch os.Args[1] {
		case "forwarder":
			run = func(ctx context.Context, args []string, o, e io.Writer) error {
				return afxdp.ForwarderMain(ctx, args[1:], o, e)
			}
		case "echo", "load":
			run = workload.Main
		}
		if run != nil {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
			stop()
			if err != nil && ctx.Err() == nil {
				os.Stderr.WriteString(err.Error() + "\n")
				os.Exit(1)
			}
			os.Exit(0)
		}
	}
	os.Exit(testutil.TestMainLeakCheck(m))
}

var (
	doctorOnce   sync.Once
	doctorReport doctor.Report
)

// requireAFXDP skips unless root and the host can run the datapath, saying
// why; it returns whether doctor found the host ready, so a test can fail
// when the datapath then says it is not supported.
func requireAFXDP(t *testing.T) {
	t.Helper()
	testutil.Privileged(t)
	doctorOnce.Do(func() { doctorReport = doctor.Check(context.Background(), doctor.Options{}) })
	req, ok := doctorReport.Requirement(doctor.KindDatapath, afxdp.Name)
	if ok && !req.Ready {
		t.Skipf("host cannot run the afxdp datapath: missing %v (%s)", req.Missing, req.Detail)
	}
}

// install installs the datapath and fails (not skips) when it says the
// host lacks something: doctor said the host has it.
func install(t *testing.T, ctx context.Context, d *afxdp.Datapath, env *datapaths.Env) {
	t.Helper()
	if err := d.Install(ctx, env); err != nil {
		if errors.Is(err, datapaths.ErrNotSupported) {
			t.Fatalf("doctor found the host ready for afxdp, but install says: %v", err)
		}
		t.Fatalf("install: %v", err)
	}
}

func newCluster(t *testing.T, ctx context.Context, nodes int, pods []testbed.PodSpec) testbed.Cluster {
	t.Helper()
	c, err := netns.New(netns.Options{}).Create(ctx, testbed.Spec{RunID: testutil.NewRunID(t), Nodes: nodes, Pods: pods})
	if err != nil {
		t.Fatalf("create cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Destroy(context.Background()); err != nil {
			t.Errorf("destroy: %v", err)
		}
	})
	return c
}

func exe(t *testing.T) []string {
	t.Helper()
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return []string{p}
}

// lineEcho serves, in pod, a TCP server that answers each line with
// "<pod>:<line>".
func lineEcho(t *testing.T, pod *testbed.Pod, port int) {
	t.Helper()
	ln, err := nsutil.Listen(pod.NetnsPath, "tcp", net.JoinHostPort(pod.IP.String(), strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("listen in %s: %v", pod.Name, err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := io.WriteString(c, pod.Name+":"+line); err != nil {
						return
					}
				}
			}()
		}
	}()
}

// requestResponse opens conns connections from pod to target and does
// reqs line round trips on each; it returns the pods that answered.
func requestResponse(t *testing.T, ctx context.Context, pod *testbed.Pod, target netip.AddrPort, conns, reqs int) map[string]int {
	t.Helper()
	answered := map[string]int{}
	for i := range conns {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := nsutil.Dial(cctx, pod.NetnsPath, "tcp", target.String())
		cancel()
		if err != nil {
			t.Fatalf("connection %d from %s to %s: %v", i, pod.Name, target, err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		for j := range reqs {
			msg := fmt.Sprintf("req-%d-%d\n", i, j)
			if _, err := io.WriteString(c, msg); err != nil {
				t.Fatalf("write: %v", err)
			}
			got, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("read answer to %q: %v", msg, err)
			}
			from, rest, ok := strings.Cut(got, ":")
			if !ok || rest != msg {
				t.Fatalf("answer %q to %q", got, msg)
			}
			answered[from]++
		}
		c.Close()
	}
	return answered
}

func counters(t *testing.T, ctx context.Context, d *afxdp.Datapath) map[string]int64 {
	t.Helper()
	c, err := d.Counters(ctx)
	if err != nil {
		t.Fatalf("counters: %v", err)
	}
	return c
}

// checkUninstalled asserts that no XDP program is left on any pod's host
// veth, that every forwarder is gone and that its admin port is closed.
func checkUninstalled(t *testing.T, ctx context.Context, c testbed.Cluster) {
	t.Helper()
	for _, p := range c.Pods() {
		n := c.Nodes()[p.NodeIndex]
		attached, err := afxdp.XDPAttached(n.NetnsPath, p.HostVeth)
		if err != nil {
			t.Errorf("check xdp on %s: %v", p.HostVeth, err)
		} else if attached {
			t.Errorf("xdp program still attached to %s after uninstall", p.HostVeth)
		}
	}
	for _, p := range c.Processes() {
		if strings.HasPrefix(p.Name, "forwarder-") && !p.Exited() {
			t.Errorf("forwarder %s (pid %d) still runs after uninstall", p.Name, p.PID)
		}
	}
	for _, n := range c.Nodes() {
		var st afxdp.Stats
		if err := datapaths.GetJSON(ctx, n.Netns(), afxdp.AdminAddr, "/stats", &st); err == nil {
			t.Errorf("forwarder admin on node %s still answers after uninstall", n.Name)
		}
	}
}

func TestVIPRequestResponse(t *testing.T) {
	tests := []struct {
		name  string
		nodes int
		pods  []testbed.PodSpec
		// backends of the service, by pod name
		backends []string
	}{
		{name: "one node two pods", nodes: 1, pods: []testbed.PodSpec{{Name: "client", Node: 0}, {Name: "server", Node: 0}}, backends: []string{"server"}},
		{name: "two nodes one pod each", nodes: 2, pods: []testbed.PodSpec{{Name: "client", Node: 0}, {Name: "server", Node: 1}}, backends: []string{"server"}},
		{name: "two backends across nodes", nodes: 2, pods: []testbed.PodSpec{{Name: "client", Node: 0}, {Name: "s0", Node: 0}, {Name: "s1", Node: 1}}, backends: []string{"s0", "s1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			requireAFXDP(t)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			c := newCluster(t, ctx, tt.nodes, tt.pods)
			const port = 8080
			svc := &datapaths.Service{Name: "echo", Port: port, VIP: netip.MustParseAddr("198.19.128.10")}
			for _, b := range tt.backends {
				svc.Backends = append(svc.Backends, c.Pod(b))
				lineEcho(t, c.Pod(b), port)
			}
			client := c.Pod("client")
			d := afxdp.New()
			env := &datapaths.Env{Cluster: c, Services: []*datapaths.Service{svc}, Client: client, Exec: exe(t)}
			install(t, ctx, d, env)
			uninstalled := false
			t.Cleanup(func() {
				if !uninstalled {
					_ = d.Uninstall(context.Background())
				}
			})
			targets := d.Target(svc)
			if len(targets) != 1 || targets[0] != netip.AddrPortFrom(svc.VIP, port) {
				t.Fatalf("targets %v, want the VIP", targets)
			}
			before, tcp0 := counters(t, ctx, d), clientTCP(t, ctx, client)
			const conns, reqs = 40, 10
			answered := requestResponse(t, ctx, client, targets[0], conns, reqs)
			after, tcp1 := counters(t, ctx, d), clientTCP(t, ctx, client)
			delta := map[string]int64{}
			for k, v := range after {
				delta[k] = v - before[k]
			}
			t.Logf("answered by %v; counter deltas: %v", answered, delta)
			if len(answered) != len(tt.backends) {
				t.Errorf("answered by %v, want every backend of %v (Maglev over %d connections)", answered, tt.backends, conns)
			}
			// Every request and every answer is a segment through the
			// forwarder, plus the handshakes.
			for _, k := range []string{"nat_hits", "reverse_nat_hits"} {
				if delta[k] < conns*reqs {
					t.Errorf("%s moved by %d, want >= %d", k, delta[k], conns*reqs)
				}
			}
			for _, k := range []string{"rx_frames", "tx_frames", "xdp_redirected"} {
				if delta[k] < 2*conns*reqs {
					t.Errorf("%s moved by %d, want >= %d", k, delta[k], 2*conns*reqs)
				}
			}
			clientNode := c.Nodes()[client.NodeIndex].Name
			if delta["rx_frames/"+clientNode+"/"+client.HostVeth] < conns*reqs {
				t.Errorf("client's socket received %d frames, want >= %d", delta["rx_frames/"+clientNode+"/"+client.HostVeth], conns*reqs)
			}
			w := datapaths.Work{Successes: conns * reqs, ClientOutSegs: tcp1.OutSegs - tcp0.OutSegs, ClientInSegs: tcp1.InSegs - tcp0.InSegs,
				Slack: 1, SlackWhy: "closing handshakes in flight"}
			if p := datapaths.Prove(d.ProofSource(), d.Verify, delta, w); !p.Verified {
				t.Errorf("proof: %s", p.Detail)
			}
			if err := d.Uninstall(ctx); err != nil {
				t.Fatalf("uninstall: %v", err)
			}
			uninstalled = true
			if err := d.Uninstall(ctx); err != nil {
				t.Errorf("second uninstall: %v", err)
			}
			checkUninstalled(t, ctx, c)
		})
	}
}

// clientTCP reads the TCP counters of the client pod's namespace.
func clientTCP(t *testing.T, ctx context.Context, client *testbed.Pod) metrics.TCP {
	t.Helper()
	snap, err := metrics.TakeSnapshot(ctx, nil, []string{client.NetnsPath})
	if err != nil {
		t.Fatal(err)
	}
	return snap.TCP[client.NetnsPath]
}
