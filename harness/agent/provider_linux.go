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
	"sync"
	"sync/atomic"
	"syscall"
	"time"

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

type callCounts struct{ execs, dials atomic.Int64 }

// Calls returns how many Exec and Dial calls the harness has made through
// the agents of every cluster p created.
func (p *Provider) Calls() (execs, dials int64) { return p.calls.execs.Load(), p.calls.dials.Load() }

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
		args := append(append([]string{}, exe...), "agent", "--listen", "unix:"+sock)
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
}

func (c *cluster) Destroy(ctx context.Context) error {
	for _, cc := range c.clients {
		cc.Close()
	}
	var errs []error
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
