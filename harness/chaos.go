package harness

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/meshbench/meshbench/internal/ports"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/harness/chaos"
	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/scenarios"
)

// chaosEnv returns what the chaos timeline acts through for one step: the
// cluster, the services' pods, the echo servers' restart and readiness
// probe, the datapath's endpoint updates (when it has a control plane)
// and its process restarts.
func (r *runner) chaosEnv(cluster testbed.Cluster, env *datapaths.Env, dp datapaths.Datapath) chaos.Env {
	svcs := map[string][]*testbed.Pod{}
	probes := map[string]scenarios.Probe{}
	for _, s := range env.Services {
		svcs[s.Name] = s.Backends
		for _, sc := range r.sc.Topology.Services {
			if sc.Name == s.Name {
				for _, b := range s.Backends {
					probes[b.Name] = sc.ReadinessProbe
				}
			}
		}
	}
	ce := chaos.Env{
		Cluster:         cluster,
		Services:        svcs,
		Implementations: r.faultImpl,
		Logger:          r.log,
		Exec:            r.opts.Exec,
		StartWorkload: func(ctx context.Context, pod *testbed.Pod) error {
			if err := r.startEcho(ctx, cluster, pod, r.echoPort(pod, env)); err != nil {
				return err
			}
			return r.opts.WaitEcho(ctx, []*testbed.Pod{pod})
		},
		// A kubelet's httpGet probe, answered by the echo server itself on
		// its admin port (as Istio rewrites probes so that the sidecar
		// does not answer for a dead application).
		Probe: func(ctx context.Context, pod *testbed.Pod) error {
			_, err := datapaths.Get(ctx, pod.Netns(), "127.0.0.1:"+strconv.Itoa(ports.EchoAdmin), "/healthz")
			return err
		},
		Readiness: func(pod *testbed.Pod) scenarios.Probe {
			if p, ok := probes[pod.Name]; ok {
				return p
			}
			return scenarios.DefaultProbe()
		},
	}
	if eu, ok := dp.(datapaths.EndpointUpdater); ok {
		ce.SetReady = func(ctx context.Context, pod *testbed.Pod, ready bool) error {
			return eu.SetPodHealth(ctx, pod.Name, ready)
		}
	}
	if pr, ok := dp.(datapaths.PodReplacer); ok {
		ce.PodDeleted, ce.PodReplaced = pr.PodDeleted, pr.PodReplaced
	}
	if rs, ok := dp.(datapaths.ProcessRestarter); ok {
		ce.RestartDatapath = rs.RestartProcess
	}
	return ce
}

// echoPort is the port pod's echo server listens on.
func (r *runner) echoPort(pod *testbed.Pod, env *datapaths.Env) int {
	for _, s := range env.Services {
		for _, b := range s.Backends {
			if b.Name == pod.Name {
				return s.Port
			}
		}
	}
	return env.Load.Port
}

// startEcho starts the echo server of pod on port.
func (r *runner) startEcho(ctx context.Context, cluster testbed.Cluster, pod *testbed.Pod, port int) error {
	args := append(append([]string{}, r.opts.Exec...), "echo",
		"--listen", ":"+strconv.Itoa(port),
		// On every address: a kubelet probes it at the pod's (no
		// datapath captures the port).
		"--admin", ":"+strconv.Itoa(ports.EchoAdmin),
		"--response-size", strconv.FormatInt(int64(r.sc.Load.ResponseSize), 10),
		"--pod", pod.Name)
	if _, err := cluster.Start(ctx, pod, testbed.ProcessSpec{Name: "echo", Role: results.RoleServer, Args: args}); err != nil {
		return fmt.Errorf("start echo in pod %s: %w", pod.Name, err)
	}
	return nil
}

// resetsCounters reports whether the scenario's faults restart processes
// whose counters are the proof of path (echo servers, proxies).
func resetsCounters(entries []scenarios.ChaosEntry) bool {
	return slices.ContainsFunc(entries, func(e scenarios.ChaosEntry) bool {
		return e.Fault == scenarios.FaultPodKill || e.Fault == scenarios.FaultProxyKill
	})
}
