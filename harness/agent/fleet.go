package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/meshbench/meshbench/harness/agent/agentpb"
	"github.com/meshbench/meshbench/harness/metrics"
	"github.com/meshbench/meshbench/harness/testbed"
)

// Calls counts the calls the harness made through agents.
type Calls struct {
	Execs, Dials, Starts, Snapshots int64
	// Exposed counts the connections node processes made to exposed
	// sockets (the proxies' xDS streams).
	Exposed int64
	// BPF counts the calls on BPF sets: attach, counters, detach.
	BPF int64
}

func (c Calls) add(o Calls) Calls {
	return Calls{c.Execs + o.Execs, c.Dials + o.Dials, c.Starts + o.Starts, c.Snapshots + o.Snapshots, c.Exposed + o.Exposed, c.BPF + o.BPF}
}

type callCounts struct{ execs, dials, starts, snapshots, exposed, bpf atomic.Int64 }

func (c *callCounts) load() Calls {
	return Calls{c.execs.Load(), c.dials.Load(), c.starts.Load(), c.snapshots.Load(), c.exposed.Load(), c.bpf.Load()}
}

// Fleet is the harness's side of a cluster's node agents, one Client per
// node (by node index): it starts processes through them and tracks them
// as testbed Processes, and reads processes and namespaces through them.
// The embedded testbed's agent mode and the kube provider share it.
type Fleet struct {
	Clients []*Client

	mu    sync.Mutex
	seq   int
	procs []*testbed.Process
}

// Start has the agent of node (by index) start spec, in the namespace and
// cgroup that req names (a pod's UID, or paths on the node), and returns
// the tracked process: signals go through the agent, and the output comes
// back to spec.Stdout and spec.Stderr over its Output stream. pod is ""
// for a process on the node.
func (f *Fleet) Start(ctx context.Context, node int, nodeName, pod string, req *agentpb.StartRequest, spec testbed.ProcessSpec) (*testbed.Process, error) {
	if len(spec.Args) == 0 {
		return nil, fmt.Errorf("start %s: no command", spec.Name)
	}
	c := f.Clients[node]
	f.mu.Lock()
	f.seq++
	// Unique per run: a restarted process may start before its
	// predecessor's cgroup is gone.
	req.Name = fmt.Sprintf("%s-%d", strings.ToLower(spec.Name), f.seq)
	f.mu.Unlock()
	req.Args, req.Env = spec.Args[1:], spec.Env
	req.Uid, req.Gid = spec.UID, spec.GID
	req.Capture = spec.Stdout != nil || spec.Stderr != nil
	c.calls.starts.Add(1)
	res, err := c.api.Start(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("start %s through the agent of node %s: %w", spec.Name, nodeName, err)
	}
	pid := res.GetPid()
	proc, exited := testbed.NewProcess(spec.Name, spec.Role, pod, nodeName, int(pid), func(sig os.Signal) error {
		n, ok := sig.(syscall.Signal)
		if !ok {
			return fmt.Errorf("signal %v: not a syscall.Signal", sig)
		}
		_, err := c.api.Signal(context.Background(), &agentpb.SignalRequest{Pid: pid, Signal: int32(n)})
		return err
	})
	out, err := c.api.Output(context.Background(), &agentpb.OutputRequest{Pid: pid})
	if err != nil {
		c.api.Stop(context.Background(), &agentpb.StopRequest{Pid: pid})
		return nil, fmt.Errorf("start %s through the agent of node %s: output: %w", spec.Name, nodeName, err)
	}
	go func() {
		for {
			chunk, err := out.Recv()
			if err != nil {
				exited(fmt.Errorf("agent: output of %s: %w", spec.Name, err))
				return
			}
			if len(chunk.GetStdout()) > 0 && spec.Stdout != nil {
				spec.Stdout.Write(chunk.GetStdout())
			}
			if len(chunk.GetStderr()) > 0 && spec.Stderr != nil {
				spec.Stderr.Write(chunk.GetStderr())
			}
			if chunk.GetExited() {
				if e := chunk.GetExit(); e != "exit status 0" {
					exited(errors.New(e))
				} else {
					exited(nil)
				}
				return
			}
		}
	}()
	f.mu.Lock()
	f.procs = append(f.procs, proc)
	f.mu.Unlock()
	return proc, nil
}

// Expose makes socket reachable through every node's agent, at paths[i]
// on node i (see Client.Expose).
func (f *Fleet) Expose(ctx context.Context, socket string, paths []string) (stop func(), err error) {
	var stops []func()
	stopAll := func() {
		for _, s := range stops {
			s()
		}
	}
	for i, c := range f.Clients {
		s, err := c.Expose(ctx, paths[i], socket)
		if err != nil {
			stopAll()
			return nil, err
		}
		stops = append(stops, s)
	}
	return stopAll, nil
}

// Processes returns the processes started through the agents and not yet
// reaped.
func (f *Fleet) Processes() []*testbed.Process {
	f.mu.Lock()
	defer f.mu.Unlock()
	live := f.procs[:0]
	for _, p := range f.procs {
		if !p.Exited() {
			live = append(live, p)
		}
	}
	f.procs = live
	return append([]*testbed.Process(nil), live...)
}

// Stop stops every process started through the agents (SIGTERM, then
// SIGKILL after testbed.StopGrace), and closes the clients.
func (f *Fleet) Stop(ctx context.Context) error {
	f.mu.Lock()
	procs := f.procs
	f.procs = nil
	f.mu.Unlock()
	err := testbed.StopAll(ctx, procs)
	for _, c := range f.Clients {
		if c != nil {
			c.Close()
		}
	}
	return err
}

// Calls sums the calls made through the fleet's agents.
func (f *Fleet) Calls() Calls {
	var s Calls
	for _, c := range f.Clients {
		if c != nil {
			s = s.add(c.calls.load())
		}
	}
	return s
}

// Snapshot reads processes and namespaces through the agents of the nodes
// they are on, and merges the nodes' answers: pids are placed by the node
// of the process in procs that has them, namespaces by the node of the pod
// or node whose namespace they are. Other namespaces (the embedded
// testbed's fabric between nodes) are read by the agent of node others,
// and are an error when others is negative, as are pids it cannot place
// and pids or namespaces two nodes both have (the snapshot keys processes
// by pid and namespaces by path).
func (f *Fleet) Snapshot(ctx context.Context, nodes []*testbed.Node, pods []*testbed.Pod, procs []*testbed.Process, others int, pids []int, netns []string) (*metrics.Snapshot, error) {
	nodeOf := map[string]int{}
	for _, n := range nodes {
		nodeOf[n.Name] = n.Index
	}
	pidNode := map[int]int{}
	for _, p := range procs {
		i, ok := nodeOf[p.Node]
		if !ok {
			return nil, fmt.Errorf("snapshot: process %s (pid %d) on unknown node %q", p.Name, p.PID, p.Node)
		}
		if j, dup := pidNode[p.PID]; dup && j != i {
			return nil, fmt.Errorf("snapshot: pid %d runs on nodes %d and %d", p.PID, j, i)
		}
		pidNode[p.PID] = i
	}
	nsNode := map[string]int{}
	for _, n := range nodes {
		nsNode[n.NetnsPath] = n.Index
	}
	for _, p := range pods {
		if j, dup := nsNode[p.NetnsPath]; dup && j != p.NodeIndex {
			return nil, fmt.Errorf("snapshot: namespace %s is on nodes %d and %d", p.NetnsPath, j, p.NodeIndex)
		}
		nsNode[p.NetnsPath] = p.NodeIndex
	}
	reqs := make([]*agentpb.SnapshotRequest, len(f.Clients))
	for i := range reqs {
		reqs[i] = &agentpb.SnapshotRequest{}
	}
	for _, pid := range pids {
		i, ok := pidNode[pid]
		if !ok {
			return nil, fmt.Errorf("snapshot: pid %d is no process of the cluster", pid)
		}
		reqs[i].Pids = append(reqs[i].Pids, int32(pid))
	}
	for _, ns := range netns {
		i, ok := nsNode[ns]
		if !ok && others >= 0 {
			i, ok = others, true
		}
		if !ok {
			return nil, fmt.Errorf("snapshot: namespace %s is no pod's or node's of the cluster", ns)
		}
		reqs[i].NetnsPaths = append(reqs[i].NetnsPaths, ns)
	}
	out := &metrics.Snapshot{Time: time.Now(), Procs: map[int]metrics.ProcStat{}, TCP: map[string]metrics.TCP{}}
	for i, req := range reqs {
		if len(req.Pids) == 0 && len(req.NetnsPaths) == 0 {
			continue
		}
		c := f.Clients[i]
		c.calls.snapshots.Add(1)
		res, err := c.api.Snapshot(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("snapshot through the agent of node %s: %w", nodes[i].Name, err)
		}
		var s metrics.Snapshot
		if err := json.Unmarshal(res.GetJson(), &s); err != nil {
			return nil, fmt.Errorf("snapshot of node %s: %w", nodes[i].Name, err)
		}
		maps.Copy(out.Procs, s.Procs)
		maps.Copy(out.TCP, s.TCP)
		out.Gone = append(out.Gone, s.Gone...)
	}
	return out, nil
}
