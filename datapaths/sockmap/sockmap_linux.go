package sockmap

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"

	"github.com/meshbench/meshbench/internal/ports"
	"github.com/meshbench/meshbench/internal/uids"

	"github.com/meshbench/meshbench/bpf/attach"
	"github.com/meshbench/meshbench/bpf/sockmap"
	"github.com/meshbench/meshbench/bpf/steer"
	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/datapaths/sidecar"
	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed"
)

// New returns the sockmap datapath.
func New(opts Options) datapaths.Datapath {
	if opts.Name == "" {
		opts.Name = Name
	}
	return sidecar.New(sidecar.Options{Name: opts.Name, Engine: opts.Engine, Steering: &Steering{}, EnvoyBinary: opts.EnvoyBinary})
}

// Steering is the eBPF part of the datapath: it implements
// sidecar.Steering. As Merbridge's per-node daemon does, it loads one set
// of programs per node (through the node's agent when it has one) and
// attaches it to the cgroups of the node's pods.
type Steering struct {
	sets []attach.Set
	// setOf is the index in sets of each node's set, by node index.
	setOf map[int]int
}

var _ sidecar.Steering = (*Steering)(nil)

// Source implements sidecar.Steering.
func (s *Steering) Source() string {
	return "BPF maps (steer and sockmap counters)"
}

// Install loads the programs on every node with pods and attaches them to
// those pods' cgroups.
func (s *Steering) Install(ctx context.Context, pods []*testbed.Pod) (err error) {
	defer datapaths.UndoOnError(ctx, &err, s.Uninstall)
	spec := attach.Spec{
		Steer: &steer.Config{
			Proxy:   netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), ports.ProxyOutbound),
			SkipUID: uids.Proxy,
		},
		// The harness reads the proxies' and echo servers' counters from
		// outside the pods' cgroups: those connections are not the mesh's.
		Sockmap: &sockmap.Config{IgnorePorts: []uint16{ports.ProxyAdmin, ports.EchoAdmin}},
	}
	for _, node := range byNode(pods) {
		spec := spec
		spec.Cgroups = nil
		for _, p := range node {
			if p.CgroupPath == "" {
				return fmt.Errorf("pod %s has no cgroup v2 directory: %w", p.Name, datapaths.ErrNotSupported)
			}
			spec.Cgroups = append(spec.Cgroups, p.CgroupPath)
		}
		set, err := attach.For(node[0].Host).AttachBPF(ctx, spec)
		if err != nil {
			return fmt.Errorf("node of pod %s: %w", node[0].Name, err)
		}
		if s.setOf == nil {
			s.setOf = map[int]int{}
		}
		s.setOf[node[0].NodeIndex] = len(s.sets)
		s.sets = append(s.sets, set)
	}
	return nil
}

// PodReplaced implements sidecar.Steering: the node's set attaches to
// the replacement's cgroup and leaves the deleted pod's; the programs,
// maps (with the other pods' spliced sockets) and counters stay.
func (s *Steering) PodReplaced(ctx context.Context, pod *testbed.Pod, oldCgroup string) error {
	i, ok := s.setOf[pod.NodeIndex]
	if !ok {
		return fmt.Errorf("sockmap: no BPF set on the node of pod %s", pod.Name)
	}
	if pod.CgroupPath == "" {
		return fmt.Errorf("replacement of pod %s has no cgroup v2 directory: %w", pod.Name, datapaths.ErrNotSupported)
	}
	return s.sets[i].Update(ctx, []string{pod.CgroupPath}, []string{oldCgroup})
}

// byNode groups pods by node, in node order.
func byNode(pods []*testbed.Pod) [][]*testbed.Pod {
	idx := map[int]int{}
	var out [][]*testbed.Pod
	for _, p := range pods {
		i, ok := idx[p.NodeIndex]
		if !ok {
			i = len(out)
			idx[p.NodeIndex] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], p)
	}
	return out
}

// BPFBytes implements sidecar.Steering: the steer and sockmap programs and
// maps, one copy per node.
func (s *Steering) BPFBytes() (bytes int64, copies int) {
	for _, set := range s.sets {
		bytes += set.MemlockBytes()
	}
	return bytes, len(s.sets)
}

// Counters implements sidecar.Steering: the sum over nodes.
func (s *Steering) Counters(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	for _, set := range s.sets {
		c, err := set.Counters(ctx)
		if err != nil {
			return nil, err
		}
		for k, v := range c {
			out[k] += int64(v)
		}
	}
	return out, nil
}

// MessagesPerRequest is how many app↔sidecar messages a request needs at
// least: its request and its response, on the client's pod and on the
// backend's. Verify wants that many per success, less the window-edge
// slack: a pod whose hops are not spliced halves it.
const MessagesPerRequest = 4

// MaxMissShare is the tolerance of Verify for misses beyond those new
// connections explain, as a share of redirects, for anything else that
// takes the TCP path.
const MaxMissShare = 0.01

// minPerSuccess is MessagesPerRequest per success, less the window-edge
// slack's share (rounded down to hundredths, as the figure is shown).
func minPerSuccess(w datapaths.Work) float64 {
	if w.Successes <= 0 {
		return MessagesPerRequest
	}
	m := float64(MessagesPerRequest*max(w.Successes-w.Slack, 0)) / float64(w.Successes)
	return math.Floor(m*100) / 100
}

// Verify implements sidecar.Steering: sk_msg must have spliced every
// app↔sidecar message of every successful request (at least
// MessagesPerRequest per success), almost none may have missed its peer,
// and connect4 must have steered every connection the client opened.
func (s *Steering) Verify(delta map[string]int64, w datapaths.Work) []results.ProofCheck {
	red, miss := delta["sockmap_redirects"], delta["sockmap_redirect_misses"]
	// New app↔sidecar connections: the client's to its sidecar, and the
	// backends' sidecars' to their apps. The first message on each can leave
	// before its peer socket joined the sockhash (the peer's side of the
	// handshake completes asynchronously) and take the TCP path.
	conns := w.ConnsOpened + delta["sidecar_app_conns"]
	allowed := int64(MaxMissShare*float64(red)) + conns
	return []results.ProofCheck{
		datapaths.AtLeastPer("sk_msg redirects per success", red, w.Successes, minPerSuccess(w), "sk_msg redirects/req",
			"each request is at least 4 app↔sidecar messages (request and response, on the client's and the backend's pod), for every success less the window-edge slack ("+w.SlackWhy+"): a request on an edge"),
		datapaths.Within("sk_msg messages that missed their peer", miss, 0, allowed, fmt.Sprintf("%d sk_msg misses", miss),
			fmt.Sprintf("one per new app↔sidecar connection (%d: its first message can leave before its peer socket joined the sockhash), plus 1%% of redirects", conns)),
		datapaths.Near("connect4 steered every connection the client opened", delta["steer_rewrites"], w.ConnsOpened, w.Slack,
			fmt.Sprintf("connect4 %d/%d new conns", delta["steer_rewrites"], w.ConnsOpened),
			"± the window-edge slack ("+w.SlackWhy+"): a connection opened on an edge"),
	}
}

// Uninstall implements sidecar.Steering: detach and unload every node's
// set.
func (s *Steering) Uninstall(ctx context.Context) error {
	var errs []error
	for _, set := range s.sets {
		errs = append(errs, set.Close(ctx))
	}
	s.sets, s.setOf = nil, nil
	return errors.Join(errs...)
}
