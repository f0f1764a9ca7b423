package harness

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/scenarios"
)

// ClientPod is the name of the pod that runs the load client.
const ClientPod = "client"

// readyTimeout bounds how long workloads and datapaths may take to answer.
const readyTimeout = 30 * time.Second

// teardown is a stack of undo functions run in reverse order.
type teardown struct {
	fns []func(context.Context) error
}

func (t *teardown) push(fn func(context.Context) error) { t.fns = append(t.fns, fn) }

func (t *teardown) run(ctx context.Context) error {
	var errs []error
	for i := len(t.fns) - 1; i >= 0; i-- {
		errs = append(errs, t.fns[i](ctx))
	}
	t.fns = nil
	return errors.Join(errs...)
}

// Layout places a scenario's pods on nodes and assigns services their
// backends. The client pod is pod 0 of node 0; the other pods are named
// n<node>-p<k>, and each service's replicas are taken round robin across
// nodes starting at node 1, so that traffic crosses nodes.
type Layout struct {
	Spec testbed.Spec
	// Backends maps a service name to its backend pod names.
	Backends map[string][]string
	// PodService maps a pod name to the service it serves ("" for the
	// client and for pods no service uses).
	PodService map[string]string
}

// PlanLayout computes the layout of sc's topology.
func PlanLayout(runID string, sc *scenarios.Scenario) Layout {
	t := sc.Topology
	l := Layout{
		Spec:       testbed.Spec{RunID: runID, Nodes: t.Nodes},
		Backends:   map[string][]string{},
		PodService: map[string]string{},
	}
	// Pod slots in round-robin order across nodes, starting at node 1.
	var order []string
	for k := 0; k < t.PodsPerNode; k++ {
		for i := 0; i < t.Nodes; i++ {
			node := (i + 1) % t.Nodes
			name := fmt.Sprintf("n%d-p%d", node, k)
			if node == 0 && k == 0 {
				name = ClientPod
			}
			l.Spec.Pods = append(l.Spec.Pods, testbed.PodSpec{Name: name, Node: node})
			if name != ClientPod {
				order = append(order, name)
			}
		}
	}
	next := 0
	for _, svc := range t.Services {
		for j := 0; j < svc.Replicas && next < len(order); j++ {
			l.Backends[svc.Name] = append(l.Backends[svc.Name], order[next])
			l.PodService[order[next]] = svc.Name
			next++
		}
		l.Spec.Services = append(l.Spec.Services, testbed.ServiceSpec{Name: svc.Name, Port: svc.Port, Backends: l.Backends[svc.Name]})
	}
	return l
}

// serviceVIP returns the i-th service's virtual address in 198.19.128.0/17.
func serviceVIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 19, 128 + byte(i/250), byte(10 + i%250)})
}

// cycle runs every rate of one datapath repetition on a fresh cluster.
func (r *runner) cycle(ctx context.Context, dpName string, rep int) (err error) {
	var td teardown
	defer func() {
		if err != nil && r.opts.Retain && ctx.Err() == nil {
			r.log.Warn("retaining cluster after failure; remove it with `meshbench down`", "run", r.opts.RunID)
			return
		}
		r.progress(Event{Phase: "teardown", Datapath: dpName, Repetition: rep})
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), TeardownTimeout)
		defer cancel()
		if terr := td.run(tctx); terr != nil {
			err = errors.Join(err, fmt.Errorf("teardown: %w", terr))
		}
	}()

	r.progress(Event{Phase: "create", Datapath: dpName, Repetition: rep})
	layout := PlanLayout(r.opts.RunID, r.sc)
	cluster, err := r.opts.Provider.Create(ctx, layout.Spec)
	if err != nil {
		return fmt.Errorf("create cluster: %w", err)
	}
	td.push(cluster.Destroy)
	if d, ok := cluster.(testbed.Describer); ok && r.res.Environment.Cluster == nil {
		if r.res.Environment.Cluster, err = d.Describe(ctx); err != nil {
			return fmt.Errorf("describe cluster: %w", err)
		}
	}

	env, err := r.startWorkloads(ctx, cluster, layout)
	if err != nil {
		return err
	}

	if r.calibr {
		r.calibr = false
		r.progress(Event{Phase: "calibrate", Datapath: dpName, Repetition: rep})
		cal, err := r.calibrate(ctx, cluster, env)
		if err != nil {
			return fmt.Errorf("calibrate: %w", err)
		}
		r.res.Calibration = cal
		if n := r.res.Environment.Noise; n != nil && cal != nil {
			n.CalibrationP50US, n.CalibrationP99US = cal.LatencyUS.P50, cal.LatencyUS.P99
		}
		if err := r.save(); err != nil {
			return err
		}
	}

	r.progress(Event{Phase: "install", Datapath: dpName, Repetition: rep})
	dp, err := r.opts.NewDatapath(dpName)
	if err != nil {
		return err
	}
	td.push(dp.Uninstall)
	if err := dp.Install(ctx, env); err != nil {
		return fmt.Errorf("install: %w", err)
	}

	svc := env.Services[0]
	for _, s := range env.Services {
		if s.Name == r.sc.Load.Service {
			svc = s
		}
	}
	for _, rate := range r.sc.Load.Rates {
		r.steps++
		r.progress(Event{Phase: "load", Datapath: dpName, Repetition: rep, Rate: rate,
			Load: time.Duration(r.sc.Load.Warmup + r.sc.Load.Duration)})
		started := time.Now()
		step, err := r.measure(ctx, cluster, env, dp, svc, rate, rep, r.plan())
		if step != nil {
			step.Sequence = len(r.res.Steps) + 1
			step.Started = started.UTC()
			r.res.Steps = append(r.res.Steps, *step)
			if serr := r.save(); serr != nil {
				return serr
			}
		}
		if err != nil {
			return fmt.Errorf("rate %d: %w", rate, err)
		}
		if r.opts.AfterStep != nil {
			if err := r.opts.AfterStep(ctx, step); err != nil {
				return err
			}
		}
	}
	return nil
}

// startWorkloads starts an echo server in every pod and waits for them.
func (r *runner) startWorkloads(ctx context.Context, cluster testbed.Cluster, layout Layout) (*datapaths.Env, error) {
	ports := map[string]int{}
	for _, s := range r.sc.Topology.Services {
		ports[s.Name] = s.Port
	}
	loadPort := ports[r.sc.Load.Service]
	for _, pod := range cluster.Pods() {
		port := loadPort
		if svc := layout.PodService[pod.Name]; svc != "" {
			port = ports[svc]
		}
		if err := r.startEcho(ctx, cluster, pod, port); err != nil {
			return nil, err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := waitServing(wctx, r.opts.WaitEcho, cluster, cluster.Pods()); err != nil {
		return nil, err
	}
	env := &datapaths.Env{
		Cluster: cluster,
		Client:  cluster.Pod(ClientPod),
		Exec:    r.opts.Exec,
		Logger:  r.log,
	}
	for i, s := range r.sc.Topology.Services {
		svc := &datapaths.Service{Name: s.Name, Port: s.Port, VIP: serviceVIP(i), Mesh: s.Mesh}
		if sa, ok := cluster.(testbed.ServiceAddresser); ok {
			svc.ClusterAddr, _ = sa.ServiceAddr(s.Name)
		}
		for _, name := range layout.Backends[s.Name] {
			svc.Backends = append(svc.Backends, cluster.Pod(name))
		}
		env.Services = append(env.Services, svc)
		if s.Name == r.sc.Load.Service {
			env.Load = svc
		}
	}
	return env, nil
}

// waitServing waits until the echo servers of pods answer and, on a
// cluster that probes its pods itself (Kubernetes), until it has them
// ready in their services' endpoints: a ClusterIP sends nowhere else.
func waitServing(ctx context.Context, waitEcho func(context.Context, []*testbed.Pod) error, cluster testbed.Cluster, pods []*testbed.Pod) error {
	if err := waitEcho(ctx, pods); err != nil {
		return err
	}
	if rw, ok := cluster.(testbed.ReadinessWatcher); ok {
		return rw.WaitServing(ctx, pods)
	}
	return nil
}
