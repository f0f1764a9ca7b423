package harness_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/meshbench/meshbench/internal/iptables"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/datapaths/all"
	"github.com/meshbench/meshbench/harness"
	"github.com/meshbench/meshbench/harness/doctor"
	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/harness/testbed/testutil"
)

// bypassed is a datapath that, once installed, has one of its hops taken
// out of the path, or the load sent around it. Its proof must fail.
type bypassed struct {
	datapaths.Datapath
	// direct sends the load to the backends' own addresses instead of
	// the datapath's target.
	direct bool
	// bypass takes the hop out, after Install.
	bypass func(ctx context.Context, env *datapaths.Env) error
}

func (b *bypassed) Install(ctx context.Context, env *datapaths.Env) error {
	if err := b.Datapath.Install(ctx, env); err != nil {
		return err
	}
	if err := b.bypass(ctx, env); err != nil {
		return fmt.Errorf("bypass: %w", err)
	}
	return nil
}

func (b *bypassed) Target(svc *datapaths.Service) []netip.AddrPort {
	if !b.direct {
		return b.Datapath.Target(svc)
	}
	var out []netip.AddrPort
	for _, p := range svc.Backends {
		out = append(out, netip.AddrPortFrom(p.IP, uint16(svc.Port)))
	}
	return out
}

const bypassScenario = `
topology:
  nodes: 2
  pods_per_node: 2
  services: [{name: echo, replicas: 2}]
load: {rates: [200], duration: 1s, warmup: 500ms, connections: 2}
`

// TestBypassFailsProof takes one hop of each datapath out of the path
// after it is installed, while the load still gets answered, and checks
// that the proof of path fails, on the check that covers that hop.
func TestBypassFailsProof(t *testing.T) {
	testutil.Privileged(t)
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Fatalf("iptables not installed (make test installs it): %v", err)
	}
	iptables := func(pod *testbed.Pod, args ...string) func(context.Context, *datapaths.Env) error {
		return func(ctx context.Context, env *datapaths.Env) error {
			return iptables.Run(ctx, pod.Netns(), args...)
		}
	}
	tests := []struct {
		name     string
		datapath string
		// direct: the load goes to the backends' addresses.
		direct bool
		bypass func(ctx context.Context, env *datapaths.Env) error
		// failing names (a part of) the check that must fail.
		failing string
	}{{
		name: "none: the load never reaches the backends", datapath: "none",
		bypass: func(ctx context.Context, env *datapaths.Env) error {
			// A proxy in between: the client pod sends everything to its
			// own echo server instead (a REDIRECT like a mesh's).
			return iptables(env.Client, "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-j", "REDIRECT")(ctx, env)
		},
		failing: "backends' echo servers served the successes",
	}, {
		name: "sidecar: the client's sidecar is skipped", datapath: "sidecar", direct: true,
		bypass: func(ctx context.Context, env *datapaths.Env) error {
			return iptables(env.Client, "-t", "nat", "-I", "ISTIO_OUTPUT", "1", "-j", "RETURN")(ctx, env)
		},
		failing: "client sidecar answered the successes",
	}, {
		name: "sidecar: one backend's sidecar is skipped", datapath: "sidecar",
		bypass: func(ctx context.Context, env *datapaths.Env) error {
			return iptables(env.Load.Backends[0], "-t", "nat", "-I", "ISTIO_INBOUND", "1", "-j", "RETURN")(ctx, env)
		},
		failing: "backend sidecars answered what was sent to each of them",
	}, {
		// The same hops with HAProxy in the seats: its own counters (the
		// stats socket) must tell the same.
		name: "sidecar/haproxy: one backend's sidecar is skipped", datapath: "sidecar/haproxy",
		bypass: func(ctx context.Context, env *datapaths.Env) error {
			return iptables(env.Load.Backends[0], "-t", "nat", "-I", "ISTIO_INBOUND", "1", "-j", "RETURN")(ctx, env)
		},
		failing: "backend sidecars answered what was sent to each of them",
	}, {
		name: "sockmap: the backends' sockets are not spliced", datapath: "sockmap",
		bypass: func(ctx context.Context, env *datapaths.Env) error {
			for _, p := range env.Load.Backends {
				if err := detachCgroup(p, ebpf.AttachCGroupSockOps); err != nil {
					return err
				}
			}
			return nil
		},
		failing: "sk_msg redirects per success",
	}, {
		name: "nodeproxy: connect4 detached from the client pod", datapath: "nodeproxy", direct: true,
		bypass: func(ctx context.Context, env *datapaths.Env) error {
			return detachCgroup(env.Client, ebpf.AttachCGroupInet4Connect)
		},
		failing: "client node's proxy answered the successes",
	}, {
		name: "nodeproxy/haproxy: connect4 detached from the client pod", datapath: "nodeproxy/haproxy", direct: true,
		bypass: func(ctx context.Context, env *datapaths.Env) error {
			return detachCgroup(env.Client, ebpf.AttachCGroupInet4Connect)
		},
		failing: "client node's proxy answered the successes",
	}, {
		// Detached from the client's veth only, the replies would still be
		// caught by the backends' XDP and dropped by a forwarder that never
		// saw the flow: detach it everywhere, so the kernel answers.
		name: "afxdp: XDP detached, the kernel carries the load", datapath: "afxdp", direct: true,
		bypass: func(ctx context.Context, env *datapaths.Env) error {
			for _, p := range env.Cluster.Pods() {
				if err := detachXDP(env.Cluster.Nodes()[p.NodeIndex], p); err != nil {
					return err
				}
			}
			return nil
		},
		failing: "the forwarder received every segment the client pod sent",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.datapath == "afxdp" {
				requireXDP(t)
			}
			links := testutil.BPFLinks(t)
			defer testutil.CheckNoNewLinks(t, links)
			opts := options(t, bypassScenario+"datapaths: ["+tt.datapath+"]\n")
			newDP := all.For(opts.Scenario, all.Options{})
			opts.NewDatapath = func(name string) (datapaths.Datapath, error) {
				dp, err := newDP(name)
				if err != nil {
					return nil, err
				}
				return &bypassed{Datapath: dp, direct: tt.direct, bypass: tt.bypass}, nil
			}
			run, err := harness.Run(context.Background(), opts)
			if err == nil || !strings.Contains(err.Error(), "proof of path failed") {
				t.Fatalf("run error %v, want a failed proof of path", err)
			}
			if len(run.Steps) != 1 {
				t.Fatalf("%d steps, want 1", len(run.Steps))
			}
			s := run.Steps[0]
			if s.Successes == 0 {
				t.Errorf("no request was answered (errors %v): the bypass should leave a working path", s.Errors)
			}
			for window, p := range map[string]*results.Proof{"warm-up": s.Proof.Warmup, "measured window": &s.Proof} {
				if !failedCheck(p, tt.failing) {
					t.Errorf("%s: the check %q did not fail: %+v", window, tt.failing, p)
				}
			}
		})
	}
}

// failedCheck reports whether p failed, on a check whose name contains
// name.
func failedCheck(p *results.Proof, name string) bool {
	if p == nil || p.Verified {
		return false
	}
	for _, c := range p.Checks {
		if !c.OK && strings.Contains(c.Name, name) {
			return true
		}
	}
	return false
}

// detachCgroup detaches, from pod's cgroup, every BPF link of attach
// type typ (whoever holds it: the datapath keeps its own file descriptor,
// which then refers to a detached link).
func detachCgroup(pod *testbed.Pod, typ ebpf.AttachType) error {
	var st unix.Stat_t
	if err := unix.Stat(pod.CgroupPath, &st); err != nil {
		return err
	}
	n := 0
	it := new(link.Iterator)
	for it.Next() {
		l := it.Take()
		info, err := l.Info()
		if err == nil && info.Type == link.CgroupType {
			if cg := info.Cgroup(); cg != nil && cg.CgroupId == st.Ino && ebpf.AttachType(cg.AttachType) == typ {
				if err := l.Detach(); err != nil {
					l.Close()
					return fmt.Errorf("detach link %d: %w", info.ID, err)
				}
				n++
			}
		}
		l.Close()
	}
	if err := it.Err(); err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("no %s link on cgroup %s", typ, pod.CgroupPath)
	}
	return nil
}

// detachXDP detaches the XDP link of pod's host-side veth on node.
func detachXDP(node *testbed.Node, pod *testbed.Pod) error {
	ns, err := netns.GetFromPath(node.NetnsPath)
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	veth, err := h.LinkByName(pod.HostVeth)
	if err != nil {
		return err
	}
	it := new(link.Iterator)
	for it.Next() {
		l := it.Take()
		info, err := l.Info()
		if err == nil && info.Type == link.XDPType && info.XDP() != nil && int(info.XDP().Ifindex) == veth.Attrs().Index {
			err := l.Detach()
			l.Close()
			return err
		}
		l.Close()
	}
	return errors.Join(it.Err(), fmt.Errorf("no XDP link on %s", pod.HostVeth))
}

// requireXDP skips when doctor says this host cannot run the afxdp
// datapath, with its reason.
func requireXDP(t *testing.T) {
	t.Helper()
	rep := doctor.Check(context.Background(), doctor.Options{})
	if req, ok := rep.Requirement(doctor.KindDatapath, "afxdp"); ok && !req.Ready {
		t.Skipf("host cannot run the afxdp datapath: missing %v (%s)", req.Missing, req.Detail)
	}
}

// TestLossWithRetriesVerifies runs the sidecar through 10% packet loss on
// one replica, with retries: failed attempts and retries must be explained
// by the proof's rules (the proxies' outcome counters), not fail it.
func TestLossWithRetriesVerifies(t *testing.T) {
	testutil.Privileged(t)
	opts := options(t, `
topology:
  nodes: 2
  pods_per_node: 2
  services:
    - name: echo
      replicas: 2
      mesh:
        retries: {attempts: 3, per_try_timeout: 50ms, retry_on: "connect-failure,5xx,reset"}
datapaths: [sidecar]
load: {rates: [200], duration: 3s, warmup: 500ms, connections: 4}
chaos:
  - {name: lossy, at: 0s, duration: 3s, fault: loss, selector: {pods: [n1-p0]}, direction: from, loss: {loss: "10"}}
`)
	run, err := harness.Run(context.Background(), opts)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	s := run.Steps[0]
	t.Logf("successes %d, errors %v, retries %d; proof: %s", s.Successes, s.Errors, s.Proof.Counters["client_retries"], s.Proof.Detail)
	if !s.Proof.Verified {
		t.Errorf("proof failed under loss with retries: %s", s.Proof.Detail)
	}
	if s.Proof.Counters["client_retries"] == 0 {
		t.Errorf("no retries under 10%% loss with a 50 ms per-try timeout: the fault did not bite")
	}
}

// TestTCPPassthroughProves runs the proxy datapaths with the service in
// TCP passthrough, where the proxies count no requests: the proof holds
// their byte counters to the bytes the client wrote and read.
func TestTCPPassthroughProves(t *testing.T) {
	testutil.Privileged(t)
	opts := options(t, `
topology:
  nodes: 2
  pods_per_node: 2
  services: [{name: echo, replicas: 2, mesh: {protocol: tcp}}]
datapaths: [sidecar, nodeproxy]
load: {rates: [200], duration: 1s, warmup: 500ms, connections: 2}
`)
	run, err := harness.Run(context.Background(), opts)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, s := range run.Steps {
		if !s.Proof.Verified || s.Proof.Warmup == nil || !s.Proof.Warmup.Verified {
			t.Errorf("%s: proof %s", s.Datapath, s.Proof.Detail)
		}
		if !strings.Contains(s.Proof.Detail, "read the bytes the client sent") {
			t.Errorf("%s: no byte check in the proof: %s", s.Datapath, s.Proof.Detail)
		}
	}
}
