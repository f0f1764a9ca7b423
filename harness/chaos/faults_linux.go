package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/meshbench/meshbench/harness/chaos/impl"

	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/scenarios"
)

// ips joins the addresses of pods other than self for an iptables -s or -d
// list ("" when none is left): a pod never drops its own traffic.
func ips(pods []*testbed.Pod, self *testbed.Pod) string {
	var s []string
	for _, p := range pods {
		if p != self {
			s = append(s, netip.PrefixFrom(p.IP, p.IP.BitLen()).String())
		}
	}
	return strings.Join(s, ",")
}

// notLo keeps INPUT rules off the loopback interface.
var notLo = []string{"!", "-i", "lo"}

func newPodKill(env *Env) Fault {
	if r, ok := env.Cluster.(testbed.PodReplacer); ok {
		return &podDelete{env: env, rep: r}
	}
	return &podKill{env: env}
}
func newProxyKill(env *Env) Fault { return &proxyKill{env: env} }
func newLoss(p float64, tag, using string) Fault {
	if using == impl.TCBPF {
		return &tcLoss{probability: p, tag: tag}
	}
	return &loss{probability: p, tag: tag}
}

func newPartition(tag, using string) Fault {
	if using == impl.TCBPF {
		return &tcPartition{tag: tag}
	}
	return &partition{tag: tag}
}

// podKill crashes the workload of every selected pod (SIGKILL, no
// warning to anyone) and restarts it after the fault's duration. Whether
// and when the pod leaves its services' endpoints is up to a readiness
// probe (prober) that starts with the kill, as a kubelet's would notice a
// crashed container: every datapath faces the same crash, and proxies
// learn of it only through the probe or their own failed connects.
type podKill struct {
	env      *Env
	mu       sync.Mutex
	killed   []*testbed.Pod
	procs    []*testbed.Process
	probers  []*prober
	replaced []*testbed.Process
}

func (f *podKill) Kind() string           { return scenarios.FaultPodKill }
func (f *podKill) Implementation() string { return impl.Signal }

func (f *podKill) Inject(ctx context.Context, t Target) error {
	if f.env.StartWorkload == nil {
		return errors.New("pod-kill needs Env.StartWorkload to restart the workload")
	}
	var errs []error
	for _, p := range t.Pods {
		procs := serverProcs(f.env.Cluster, p)
		if len(procs) == 0 {
			errs = append(errs, fmt.Errorf("kill workload of %s: no server process runs in the pod", p.Name))
			continue
		}
		err := killAll(ctx, procs)
		killedAt := time.Now()
		f.mu.Lock()
		f.killed = append(f.killed, p)
		f.procs = append(f.procs, procs...)
		if f.env.Probe != nil {
			f.probers = append(f.probers, startProber(ctx, f.env, p, killedAt))
		}
		f.mu.Unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("kill workload of %s: %w", p.Name, err))
		}
	}
	return errors.Join(errs...)
}

// serverProcs returns the server processes of pod that still run.
func serverProcs(c testbed.Cluster, pod *testbed.Pod) []*testbed.Process {
	var out []*testbed.Process
	for _, pr := range c.Processes() {
		if pr.Pod == pod.Name && pr.Role == results.RoleServer && !pr.Exited() {
			out = append(out, pr)
		}
	}
	return out
}

func killAll(ctx context.Context, procs []*testbed.Process) error {
	var errs []error
	for _, pr := range procs {
		if err := pr.Signal(syscall.SIGKILL); err != nil {
			errs = append(errs, err)
			continue
		}
		select {
		case <-pr.Done():
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("wait for %s (pid %d): %w", pr.Name, pr.PID, ctx.Err()))
		case <-time.After(5 * time.Second):
			errs = append(errs, fmt.Errorf("%s (pid %d) not reaped 5s after SIGKILL", pr.Name, pr.PID))
		}
	}
	return errors.Join(errs...)
}

func (f *podKill) Activity(ctx context.Context) (results.FaultActivity, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var replaced []*testbed.Process
	for _, p := range f.killed {
		replaced = append(replaced, serverProcs(f.env.Cluster, p)...)
	}
	return killActivity(f.procs, replaced, "server processes"), nil
}

func (f *podKill) Recover(ctx context.Context, t Target) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	var left []*testbed.Pod
	for i, p := range f.killed {
		if err := f.env.StartWorkload(ctx, p); err != nil {
			errs = append(errs, fmt.Errorf("restart workload of %s: %w", p.Name, err))
			left = append(left, p)
			continue
		}
		if i < len(f.probers) {
			f.probers[i].workloadRestarted()
		}
	}
	f.killed = left
	return errors.Join(errs...)
}

// settle waits until the readiness probes have put the killed pods back
// into their endpoints (or ends them when stop closes) and records what
// they did.
func (f *podKill) settle(stop <-chan struct{}, rec *results.FaultRecord) error {
	f.mu.Lock()
	probers := f.probers
	f.probers = nil
	f.mu.Unlock()
	return settleProbers(probers, stop, rec)
}

// settleProbers waits for every probe (nil ones skipped) to put its pod
// back, or ends them when stop closes, and records what they did.
func settleProbers(probers []*prober, stop <-chan struct{}, rec *results.FaultRecord) error {
	var errs []error
	var done []*prober
	for _, p := range probers {
		if p != nil {
			errs = append(errs, p.wait(stop))
			done = append(done, p)
		}
	}
	if len(done) > 0 {
		rec.Readiness = readinessRecord(done[0].spec, done)
	}
	return errors.Join(errs...)
}

// proxyKill kills the datapath processes of the selected pods and nodes.
type proxyKill struct {
	env    *Env
	mu     sync.Mutex
	killed []*testbed.Process
}

func (f *proxyKill) Kind() string           { return scenarios.FaultProxyKill }
func (f *proxyKill) Implementation() string { return impl.Signal }

func (f *proxyKill) Inject(ctx context.Context, t Target) error {
	var all []*testbed.Process
	if f.env.DatapathProcesses != nil {
		all = f.env.DatapathProcesses()
	} else if f.env.Cluster != nil {
		for _, pr := range f.env.Cluster.Processes() {
			if pr.Role == results.RoleDatapath {
				all = append(all, pr)
			}
		}
	}
	var procs []*testbed.Process
	for _, pr := range all {
		onPod := pr.Pod != "" && slices.ContainsFunc(t.Pods, func(p *testbed.Pod) bool { return p.Name == pr.Pod })
		onNode := pr.Pod == "" && slices.ContainsFunc(t.Nodes, func(n *testbed.Node) bool { return n.Name == pr.Node })
		if (onPod || onNode) && !pr.Exited() {
			procs = append(procs, pr)
		}
	}
	if len(procs) == 0 {
		// Nothing to kill (the none datapath runs no process): the fault
		// is inactive, which Activity says.
		return nil
	}
	err := killAll(ctx, procs)
	f.mu.Lock()
	f.killed = append(f.killed, procs...)
	f.mu.Unlock()
	return err
}

func (f *proxyKill) Activity(ctx context.Context) (results.FaultActivity, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := killActivity(f.killed, nil, "datapath processes")
	if len(f.killed) == 0 {
		a.Detail = "no datapath process (sidecar, node proxy or forwarder) runs on the selected pods or nodes: nothing to kill"
	}
	return a, nil
}

func (f *proxyKill) Recover(ctx context.Context, t Target) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.env.RestartDatapath == nil {
		f.killed = nil
		return nil
	}
	var errs []error
	var left []*testbed.Process
	for _, pr := range f.killed {
		if err := f.env.RestartDatapath(ctx, pr); err != nil {
			errs = append(errs, fmt.Errorf("restart %s of %s%s: %w", pr.Name, pr.Pod, pr.Node, err))
			left = append(left, pr)
		}
	}
	f.killed = left
	return errors.Join(errs...)
}

// loss drops a random share of packets on the receiving side (iptables
// statistic in the receiver's INPUT chain), so that senders see loss, not
// EPERM.
type loss struct {
	probability float64
	tag         string
	rules       ruleSet
}

func (f *loss) Kind() string           { return scenarios.FaultLoss }
func (f *loss) Implementation() string { return impl.Statistic }

func (f *loss) Inject(ctx context.Context, t Target) error {
	stat := []string{"-m", "statistic", "--mode", "random", "--probability", strconv.FormatFloat(f.probability, 'f', 6, 64)}
	drop := append(comment(f.tag), "-j", "DROP")
	if t.Direction == "from" || t.Direction == "both" {
		// Packets the selected pods receive (from the peers, if any).
		for _, p := range t.Pods {
			spec := append(slices.Clone(notLo), stat...)
			if t.Peers != nil {
				src := ips(t.Peers, p)
				if src == "" {
					continue
				}
				spec = append([]string{"-s", src}, spec...)
			}
			if err := f.rules.add(ctx, rule{p.Netns(), "INPUT", append(spec, drop...)}); err != nil {
				return err
			}
		}
	}
	if t.Direction == "to" || t.Direction == "both" {
		// Packets the selected pods send, dropped where they arrive: at the
		// peers, or at every other pod and every node.
		receivers := t.Peers
		if receivers == nil {
			receivers = t.Others
		}
		for _, p := range receivers {
			src := ips(t.Pods, p)
			if src == "" {
				continue
			}
			spec := append([]string{"-s", src}, stat...)
			if err := f.rules.add(ctx, rule{p.Netns(), "INPUT", append(spec, drop...)}); err != nil {
				return err
			}
		}
		if t.Peers == nil {
			// What the pods send to their node itself: a per-node proxy
			// receives their connections there.
			for _, n := range t.allNodes {
				spec := append([]string{"-s", ips(t.Pods, nil)}, stat...)
				if err := f.rules.add(ctx, rule{n.Netns(), "INPUT", append(spec, drop...)}); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (f *loss) Activity(ctx context.Context) (results.FaultActivity, error) {
	return f.rules.activity(ctx, "its DROP rules")
}

func (f *loss) Recover(ctx context.Context, t Target) error { return f.rules.removeAll(ctx) }

// partition drops every packet between the selected pods and the peers on
// the receiving side: in the peers' INPUT for "to", in the selected pods'
// INPUT for "from", in both for "both".
type partition struct {
	tag   string
	rules ruleSet
}

func (f *partition) Kind() string           { return scenarios.FaultPartition }
func (f *partition) Implementation() string { return impl.IptablesDrop }

func (f *partition) Inject(ctx context.Context, t Target) error {
	if len(t.Peers) == 0 {
		return errors.New("partition needs a target")
	}
	drop := append(comment(f.tag), "-j", "DROP")
	if t.Direction == "from" || t.Direction == "both" {
		for _, p := range t.Pods {
			if err := f.block(ctx, p, ips(t.Peers, p), drop); err != nil {
				return err
			}
		}
	}
	if t.Direction == "to" || t.Direction == "both" {
		for _, p := range t.Peers {
			if err := f.block(ctx, p, ips(t.Pods, p), drop); err != nil {
				return err
			}
		}
	}
	return nil
}

func (f *partition) block(ctx context.Context, p *testbed.Pod, src string, drop []string) error {
	if src == "" {
		return nil
	}
	return f.rules.add(ctx, rule{p.Netns(), "INPUT", append([]string{"-s", src}, drop...)})
}

func (f *partition) Activity(ctx context.Context) (results.FaultActivity, error) {
	return f.rules.activity(ctx, "its DROP rules")
}

func (f *partition) Recover(ctx context.Context, t Target) error { return f.rules.removeAll(ctx) }
