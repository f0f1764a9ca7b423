package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/meshbench/meshbench/harness/agent/agentpb"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/internal/nsutil"
)

// Provider wraps a provider whose nodes are on this machine (the embedded
// testbed) so that the harness reaches its nodes and pods through one node
// agent per node, over the same gRPC API as on Kubernetes: each node runs
// `meshbench agent` (Exec's program with "agent") in its own network
// namespace, on a unix socket, and every node's and pod's Host is that
// agent's client. The agent-mode tests (`go test -run Agent ./...`) run
// datapaths this way.
type Provider struct {
	Inner testbed.Provider
	// Exec is the meshbench command line the agents run (default: this
	// executable).
	Exec []string

	calls callCounts
}

type callCounts struct{ execs, dials, starts atomic.Int64 }

// Calls returns how many Exec, Dial and Start calls the harness has made
// through the agents of every cluster p created.
func (p *Provider) Calls() (execs, dials, starts int64) {
	return p.calls.execs.Load(), p.calls.dials.Load(), p.calls.starts.Load()
}

// Name implements testbed.Provider.
func (p *Provider) Name() string { return p.Inner.Name() + "+agents" }

// Down implements testbed.Provider: the inner provider's objects (the
// agents are its processes) and the agents' socket directories.
func (p *Provider) Down(ctx context.Context, runID string) ([]string, error) {
	removed, err := p.Inner.Down(ctx, runID)
	pattern := filepath.Join(os.TempDir(), "meshbench-agents-*")
	if runID != "" {
		pattern = filepath.Join(os.TempDir(), "meshbench-agents-"+runID+"-*")
	}
	dirs, _ := filepath.Glob(pattern)
	var errs []error
	for _, d := range dirs {
		if rerr := os.RemoveAll(d); rerr != nil {
			errs = append(errs, rerr)
			continue
		}
		removed = append(removed, "agent sockets "+d)
	}
	return removed, errors.Join(append([]error{err}, errs...)...)
}

// Create implements testbed.Provider.
func (p *Provider) Create(ctx context.Context, spec testbed.Spec) (_ testbed.Cluster, err error) {
	exe := p.Exec
	if len(exe) == 0 {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("agents: %w", err)
		}
		exe = []string{self}
	}
	inner, err := p.Inner.Create(ctx, spec)
	if err != nil {
		return nil, err
	}
	c := &cluster{Cluster: inner}
	defer func() {
		if err != nil {
			c.Destroy(context.Background())
		}
	}()
	if c.dir, err = os.MkdirTemp("", "meshbench-agents-"+spec.RunID+"-"); err != nil {
		return nil, fmt.Errorf("agents: %w", err)
	}
	var b [16]byte
	rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	for _, n := range inner.Nodes() {
		sock := filepath.Join(c.dir, n.Name+".sock")
		args := append(append([]string{}, exe...), "agent", "--listen", "unix:"+sock, "--allow-program")
		// Not a cluster process: the agent is the harness's, and its CPU
		// and memory are no datapath's.
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "MESHBENCH_AGENT_TOKEN="+token)
		cmd.Stdout, cmd.Stderr = &c.logs, &c.logs
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := nsutil.Do(n.NetnsPath, cmd.Start); err != nil {
			return nil, fmt.Errorf("agents: start on node %s: %w", n.Name, err)
		}
		c.cmds = append(c.cmds, cmd)
		client, err := NewClient("unix:"+sock, token)
		if err != nil {
			return nil, err
		}
		cc := &countingHost{Client: client, calls: &p.calls}
		c.clients = append(c.clients, cc)
		if err := waitServing(ctx, client, n.NetnsPath); err != nil {
			return nil, fmt.Errorf("agents: node %s: %w", n.Name, err)
		}
		n.Host = cc
	}
	for _, pod := range inner.Pods() {
		pod.Host = inner.Nodes()[pod.NodeIndex].Host
	}
	return c, nil
}

// waitServing waits until the agent answers an Exec in the node's
// namespace.
func waitServing(ctx context.Context, c *Client, netns string) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		_, err := c.Exec(ctx, netns, []string{"ip", "-o", "link", "show", "lo"}, "")
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("agent not serving: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// cluster is the inner cluster with agents on its nodes.
type cluster struct {
	testbed.Cluster
	dir     string
	clients []*countingHost
	cmds    []*exec.Cmd
	logs    syncBuffer

	mu    sync.Mutex
	seq   int
	procs []*testbed.Process
}

// Start implements testbed.Cluster: the pod's node agent starts the
// process in the pod's namespace and in a cgroup under the pod's.
func (c *cluster) Start(ctx context.Context, pod *testbed.Pod, spec testbed.ProcessSpec) (*testbed.Process, error) {
	if pod == nil || c.Pod(pod.Name) != pod {
		return nil, fmt.Errorf("start %s: pod not in cluster %s", spec.Name, c.RunID())
	}
	return c.startVia(ctx, c.clients[pod.NodeIndex], &agentpb.StartRequest{
		NetnsPath: pod.NetnsPath, CgroupPath: pod.CgroupPath, MemoryCgroupPath: pod.MemoryCgroupPath,
	}, pod.Name, pod.Node, spec)
}

// StartOnNode implements testbed.Cluster: the node's agent starts the
// process in the node's namespace, in a cgroup under the node's.
func (c *cluster) StartOnNode(ctx context.Context, node *testbed.Node, spec testbed.ProcessSpec) (*testbed.Process, error) {
	nodes := c.Nodes()
	if node == nil || node.Index < 0 || node.Index >= len(nodes) || nodes[node.Index] != node {
		return nil, fmt.Errorf("start %s: node not in cluster %s", spec.Name, c.RunID())
	}
	// The node's cgroup is the embedded testbed's to make (its teardown
	// removes it); this is the same host.
	if node.CgroupPath != "" {
		if err := os.MkdirAll(node.CgroupPath, 0o755); err != nil {
			return nil, fmt.Errorf("start %s on node %s: %w", spec.Name, node.Name, err)
		}
	}
	return c.startVia(ctx, c.clients[node.Index], &agentpb.StartRequest{NetnsPath: node.NetnsPath, CgroupPath: node.CgroupPath}, "", node.Name, spec)
}

func (c *cluster) startVia(ctx context.Context, h *countingHost, req *agentpb.StartRequest, pod, node string, spec testbed.ProcessSpec) (*testbed.Process, error) {
	if len(spec.Args) == 0 {
		return nil, fmt.Errorf("start %s: no command", spec.Name)
	}
	c.mu.Lock()
	c.seq++
	// Unique per run: a restarted process may start before its
	// predecessor's cgroup is gone.
	req.Name = fmt.Sprintf("%s-%d", strings.ToLower(spec.Name), c.seq)
	c.mu.Unlock()
	req.Program, req.Args, req.Env = spec.Args[0], spec.Args[1:], spec.Env
	req.Uid, req.Gid = spec.UID, spec.GID
	req.Capture = spec.Stdout != nil || spec.Stderr != nil
	h.calls.starts.Add(1)
	res, err := h.api.Start(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("start %s through the agent of node %s: %w", spec.Name, node, err)
	}
	pid := res.GetPid()
	proc, exited := testbed.NewProcess(spec.Name, spec.Role, pod, node, int(pid), func(sig os.Signal) error {
		n, ok := sig.(syscall.Signal)
		if !ok {
			return fmt.Errorf("signal %v: not a syscall.Signal", sig)
		}
		_, err := h.api.Signal(context.Background(), &agentpb.SignalRequest{Pid: pid, Signal: int32(n)})
		return err
	})
	out, err := h.api.Output(context.Background(), &agentpb.OutputRequest{Pid: pid})
	if err != nil {
		h.api.Stop(context.Background(), &agentpb.StopRequest{Pid: pid})
		return nil, fmt.Errorf("start %s through the agent of node %s: output: %w", spec.Name, node, err)
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
	c.mu.Lock()
	c.procs = append(c.procs, proc)
	c.mu.Unlock()
	return proc, nil
}

// Processes implements testbed.Cluster: the inner cluster's and those the
// agents started, not yet reaped.
func (c *cluster) Processes() []*testbed.Process {
	c.mu.Lock()
	defer c.mu.Unlock()
	live := c.procs[:0]
	for _, p := range c.procs {
		if !p.Exited() {
			live = append(live, p)
		}
	}
	c.procs = live
	return append(c.Cluster.Processes(), live...)
}

func (c *cluster) Destroy(ctx context.Context) error {
	// The agents' processes first, as the inner cluster stops its own:
	// SIGTERM, then SIGKILL after the grace.
	var errs []error
	c.mu.Lock()
	procs := c.procs
	c.procs = nil
	c.mu.Unlock()
	var wg sync.WaitGroup
	perr := make([]error, len(procs))
	for i, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			perr[i] = p.Stop(ctx)
		}()
	}
	wg.Wait()
	errs = append(errs, perr...)
	for _, cc := range c.clients {
		cc.Close()
	}
	for _, cmd := range c.cmds {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				errs = append(errs, fmt.Errorf("agent %d: %w: %s", cmd.Process.Pid, err, c.logs.String()))
			}
		case <-time.After(testbed.StopGrace):
			cmd.Process.Kill()
			<-done
			errs = append(errs, fmt.Errorf("agent %d: killed after %v", cmd.Process.Pid, testbed.StopGrace))
		}
	}
	c.cmds = nil
	err := errors.Join(append(errs, c.Cluster.Destroy(ctx))...)
	if c.dir != "" {
		err = errors.Join(err, os.RemoveAll(c.dir))
	}
	return err
}

// countingHost counts the calls made through an agent.
type countingHost struct {
	*Client
	calls *callCounts
}

var _ nsutil.Host = (*countingHost)(nil)

func (h *countingHost) Exec(ctx context.Context, netns string, argv []string, stdin string) (string, error) {
	h.calls.execs.Add(1)
	return h.Client.Exec(ctx, netns, argv, stdin)
}

func (h *countingHost) Dial(ctx context.Context, netns, network, addr string) (net.Conn, error) {
	h.calls.dials.Add(1)
	return h.Client.Dial(ctx, netns, network, addr)
}

// syncBuffer collects the agents' output, for errors.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
