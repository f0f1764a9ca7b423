package harness

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"syscall"

	"github.com/meshbench/meshbench/internal/ports"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/harness/chaos"
	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/scenarios"
)

// chaosEnv returns what the chaos timeline acts through for one step: the
// cluster, the services' pods, and callbacks that kill and restart echo
// servers (telling the datapath's control plane, when it has one, that the
// pod's endpoints are down and up again) and restart datapath processes.
func (r *runner) chaosEnv(cluster testbed.Cluster, env *datapaths.Env, dp datapaths.Datapath) chaos.Env {
	svcs := map[string][]*testbed.Pod{}
	for _, s := range env.Services {
		svcs[s.Name] = s.Backends
	}
	eu, _ := dp.(datapaths.EndpointUpdater)
	ce := chaos.Env{
		Cluster:         cluster,
		Services:        svcs,
		Implementations: r.faultImpl,
		Logger:          r.log,
		KillWorkload: func(ctx context.Context, pod *testbed.Pod) error {
			if eu != nil {
				if err := eu.SetPodHealth(ctx, pod.Name, false); err != nil {
					return err
				}
			}
			for _, p := range cluster.Processes() {
				if p.Pod == pod.Name && p.Role == results.RoleServer {
					if err := p.Signal(syscall.SIGKILL); err != nil {
						return err
					}
					<-p.Done()
				}
			}
			return nil
		},
		StartWorkload: func(ctx context.Context, pod *testbed.Pod) error {
			if err := r.startEcho(ctx, cluster, pod, r.echoPort(pod, env)); err != nil {
				return err
			}
			if err := r.opts.WaitEcho(ctx, []*testbed.Pod{pod}); err != nil {
				return err
			}
			if eu != nil {
				return eu.SetPodHealth(ctx, pod.Name, true)
			}
			return nil
		},
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
		"--admin", "127.0.0.1:"+strconv.Itoa(ports.EchoAdmin),
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
