package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/meshbench/meshbench/harness/agent/agentpb"
	"github.com/meshbench/meshbench/harness/metrics"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/internal/nsutil"
)

// Provider wraps a provider whose nodes are on this machine (the embedded
// testbed) so that the harness reaches its nodes and pods through one node
// agent per node, over the same gRPC API as on Kubernetes: each node runs
// `meshbench agent` (Exec's program with "agent") in its own network
// namespace, on a unix socket; every node's and pod's Host is that agent's
// client, every process starts through it, and processes and namespaces
// are read through it. The agent-mode tests (`go test -run Agent ./...`)
// run datapaths this way.
type Provider struct {
	Inner testbed.Provider
	// Exec is the meshbench command line the agents run (default: this
	// executable).
	Exec []string

	mu    sync.Mutex
	calls Calls
}

// Calls returns how many calls of each kind the harness has made through
// the agents of every cluster p created and destroyed.
func (p *Provider) Calls() Calls {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls
}

// Name implements testbed.Provider.
func (p *Provider) Name() string { return p.Inner.Name() + "+agents" }

// Down implements testbed.Provider: the inner provider's objects (the
// agents run in its namespaces) and the agents' socket directories.
func (p *Provider) Down(ctx context.Context, runID string) ([]string, error) {
	removed, err := p.Inner.Down(ctx, runID)
	pattern := filepath.Join(os.TempDir(), "meshbench-agents-*")
	if runID != "" {
		pattern = filepath.Join(os.TempDir(), "meshbench-agents-"+runID+"-*")
	}
	dirs, _ := filepath.Glob(pattern)
	errs := []error{err}
	for _, d := range dirs {
		if rerr := os.RemoveAll(d); rerr != nil {
			errs = append(errs, rerr)
			continue
		}
		removed = append(removed, "agent sockets "+d)
	}
	return removed, errors.Join(errs...)
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
	c := &cluster{Cluster: inner, provider: p}
	defer func() {
		if err != nil {
			c.Destroy(context.Background())
		}
	}()
	if c.dir, err = os.MkdirTemp("", "meshbench-agents-"+spec.RunID+"-"); err != nil {
		return nil, fmt.Errorf("agents: %w", err)
	}
	// The proxies (uid 1337) reach the xDS socket the agents expose here.
	if err := os.Chmod(c.dir, 0o755); err != nil {
		return nil, fmt.Errorf("agents: %w", err)
	}
	var b [16]byte
	rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	for _, n := range inner.Nodes() {
		sock := filepath.Join(c.dir, n.Name+".sock")
		args := append(append([]string{}, exe...), "agent", "--listen", "unix:"+sock, "--allow-program", "--run", spec.RunID)
		// Not a cluster process: the agent is the harness's, and its CPU
		// and memory are no datapath's.
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "MESHBENCH_AGENT_TOKEN="+token)
		cmd.Stdout, cmd.Stderr = &c.logs, &c.logs
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		var proc *testbed.Process
		if err := nsutil.Do(n.NetnsPath, func() (err error) {
			proc, err = testbed.StartCmd(cmd, "agent", "", "", n.Name)
			return err
		}); err != nil {
			return nil, fmt.Errorf("agents: start on node %s: %w", n.Name, err)
		}
		c.agents = append(c.agents, proc)
		client, err := NewClient("unix:"+sock, token)
		if err != nil {
			return nil, err
		}
		c.fleet.Clients = append(c.fleet.Clients, client)
		if err := waitServing(ctx, client, n.NetnsPath); err != nil {
			return nil, fmt.Errorf("agents: node %s: %w (agent output: %s)", n.Name, err, c.logs.String())
		}
		n.Host = client
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
		_, err := c.api.Exec(ctx, &agentpb.ExecRequest{NetnsPath: netns, Argv: []string{"ip", "-o", "link", "show", "lo"}})
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
	provider *Provider
	dir      string
	fleet    Fleet
	agents   []*testbed.Process
	logs     syncBuffer
}

// Start implements testbed.Cluster: the pod's node agent starts the
// process in the pod's namespace and in a cgroup under the pod's.
func (c *cluster) Start(ctx context.Context, pod *testbed.Pod, spec testbed.ProcessSpec) (*testbed.Process, error) {
	if pod == nil || c.Pod(pod.Name) != pod {
		return nil, fmt.Errorf("start %s: pod not in cluster %s", spec.Name, c.RunID())
	}
	return c.fleet.Start(ctx, pod.NodeIndex, pod.Node, pod.Name, c.startRequest(spec, pod.NetnsPath, pod.CgroupPath, pod.MemoryCgroupPath), spec)
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
	return c.fleet.Start(ctx, node.Index, node.Name, "", c.startRequest(spec, node.NetnsPath, node.CgroupPath, ""), spec)
}

// startRequest names the namespace and cgroups by path, and the program:
// the harness's copy of itself, which the agents run with --allow-program.
func (c *cluster) startRequest(spec testbed.ProcessSpec, netns, cgroup, memCgroup string) *agentpb.StartRequest {
	req := &agentpb.StartRequest{NetnsPath: netns, CgroupPath: cgroup, MemoryCgroupPath: memCgroup}
	if len(spec.Args) > 0 {
		req.Program = spec.Args[0]
	}
	return req
}

// Expose implements testbed.Exposer: each node's agent listens in the
// run's socket directory (one path per node: they share this host's
// filesystem).
func (c *cluster) Expose(ctx context.Context, socket string) ([]string, func(), error) {
	paths := make([]string, len(c.fleet.Clients))
	for i := range paths {
		paths[i] = filepath.Join(c.dir, fmt.Sprintf("node%d-%s", i, filepath.Base(socket)))
	}
	stop, err := c.fleet.Expose(ctx, socket, paths)
	return paths, stop, err
}

// Processes implements testbed.Cluster.
func (c *cluster) Processes() []*testbed.Process {
	return append(c.Cluster.Processes(), c.fleet.Processes()...)
}

// Snapshot reads the cluster's processes and namespaces through the agents
// of their nodes (the harness uses it instead of reading this host). The
// fabric's namespace, which is on no node, is read by node 0's agent: it
// runs on the same host.
func (c *cluster) Snapshot(ctx context.Context, pids []int, netns []string) (*metrics.Snapshot, error) {
	return c.fleet.Snapshot(ctx, c.Nodes(), c.Pods(), c.Processes(), 0, pids, netns)
}

// Destroy implements testbed.Cluster: the processes the agents started,
// then the agents, then the inner cluster.
func (c *cluster) Destroy(ctx context.Context) error {
	calls := c.fleet.Calls()
	errs := []error{c.fleet.Stop(ctx)}
	c.fleet.Clients = nil
	c.provider.mu.Lock()
	c.provider.calls = c.provider.calls.add(calls)
	c.provider.mu.Unlock()
	// The agents end on SIGTERM (SIGKILL after the grace), and must exit
	// cleanly: an agent that fails, or has to be killed, is an error.
	errs = append(errs, testbed.StopAll(ctx, c.agents))
	for _, a := range c.agents {
		if err := a.Err(); err != nil {
			errs = append(errs, fmt.Errorf("agent on node %s (pid %d): %w: %s", a.Node, a.PID, err, c.logs.String()))
		}
	}
	c.agents = nil
	errs = append(errs, c.Cluster.Destroy(ctx))
	if c.dir != "" {
		errs = append(errs, os.RemoveAll(c.dir))
		c.dir = ""
	}
	return errors.Join(errs...)
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
