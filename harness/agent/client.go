package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/meshbench/meshbench/harness/agent/agentpb"
	"github.com/meshbench/meshbench/internal/nsutil"
)

// Client is the harness's side of one node agent. It implements
// nsutil.Host, so a pod or node whose Host is a Client is reached through
// its agent: tools run, and connections open, on the agent's node.
type Client struct {
	conn  *grpc.ClientConn
	api   agentpb.AgentClient
	calls callCounts
}

var _ nsutil.Host = (*Client)(nil)

// NewClient connects to an agent at target ("unix:PATH", or a loopback
// host:port such as a port-forward's local end), authenticating every call
// with token. The connection is made lazily, on the first call.
func NewClient(target, token string) (*Client, error) {
	if _, isUnix := cutUnix(target); !isUnix {
		target = "passthrough:///" + target
	}
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(TokenCredentials(token)))
	if err != nil {
		return nil, fmt.Errorf("agent client %s: %w", target, err)
	}
	return &Client{conn: conn, api: agentpb.NewAgentClient(conn)}, nil
}

func cutUnix(target string) (string, bool) {
	if len(target) > 5 && target[:5] == "unix:" {
		return target[5:], true
	}
	return "", false
}

// API returns the agent's generated client, for the calls Client does not
// wrap.
func (c *Client) API() agentpb.AgentClient { return c.api }

// Calls returns how many calls of each kind went through c.
func (c *Client) Calls() Calls { return c.calls.load() }

// Close closes the connection to the agent.
func (c *Client) Close() error { return c.conn.Close() }

// Exec implements nsutil.Host: the tool runs on the agent's node, in the
// namespace at netns there.
func (c *Client) Exec(ctx context.Context, netns string, argv []string, stdin string) (string, error) {
	c.calls.execs.Add(1)
	res, err := c.api.Exec(ctx, &agentpb.ExecRequest{NetnsPath: netns, Argv: argv, Stdin: []byte(stdin)})
	if status.Code(err) == codes.NotFound {
		// The namespace is gone, as a local one would be: os.ErrNotExist.
		return "", fmt.Errorf("agent: %v in %s: %w (%v)", argv, netns, os.ErrNotExist, err)
	}
	if err != nil {
		return "", fmt.Errorf("agent: %v in %s: %w", argv, netns, err)
	}
	if res.GetExitCode() != 0 {
		return "", &nsutil.ExitError{Argv: argv, Netns: netns, Code: int(res.GetExitCode()), Stderr: string(res.GetStderr())}
	}
	return string(res.GetStdout()), nil
}

// Dial implements nsutil.Host: the connection is opened by the agent from
// inside the namespace at netns on its node, and its bytes travel over the
// agent's stream.
func (c *Client) Dial(ctx context.Context, netns, network, addr string) (net.Conn, error) {
	c.calls.dials.Add(1)
	if network != "tcp" && network != "tcp4" {
		return nil, fmt.Errorf("agent dial: network %q: only tcp", network)
	}
	sctx, cancel := context.WithCancel(context.Background())
	stream, err := c.api.Dial(sctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("agent dial %s in %s: %w", addr, netns, err)
	}
	opened := make(chan error, 1)
	go func() {
		if err := stream.Send(&agentpb.DialFrame{NetnsPath: netns, Address: addr}); err != nil {
			opened <- err
			return
		}
		_, err := stream.Recv()
		opened <- err
	}()
	select {
	case err = <-opened:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("agent dial %s in %s: %w", addr, netns, err)
	}
	return &streamConn{stream: stream, cancel: cancel, addr: addr}, nil
}

// streamConn is a net.Conn over an agent's Dial stream. Deadlines are not
// supported (SetDeadline and friends do nothing): callers bound their work
// with contexts, which close the connection.
type streamConn struct {
	stream agentpb.Agent_DialClient
	cancel context.CancelFunc
	addr   string

	rmu     sync.Mutex
	pending []byte
	rerr    error

	wmu    sync.Mutex
	closed bool
}

func (s *streamConn) Read(p []byte) (int, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	for len(s.pending) == 0 {
		if s.rerr != nil {
			return 0, s.rerr
		}
		f, err := s.stream.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				err = fmt.Errorf("agent connection to %s: %w", s.addr, err)
			}
			s.rerr = err
			continue
		}
		s.pending = f.GetData()
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	return n, nil
}

func (s *streamConn) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return 0, net.ErrClosed
	}
	const chunk = 32 << 10
	for off := 0; off < len(p); off += chunk {
		end := min(off+chunk, len(p))
		if err := s.stream.Send(&agentpb.DialFrame{Data: p[off:end]}); err != nil {
			return off, fmt.Errorf("agent connection to %s: %w", s.addr, err)
		}
	}
	return len(p), nil
}

// CloseWrite shuts the connection's write side on the agent's node.
func (s *streamConn) CloseWrite() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.stream.CloseSend()
}

func (s *streamConn) Close() error {
	s.wmu.Lock()
	s.closed = true
	s.wmu.Unlock()
	s.cancel()
	return nil
}

func (s *streamConn) LocalAddr() net.Addr              { return agentAddr("agent") }
func (s *streamConn) RemoteAddr() net.Addr             { return agentAddr(s.addr) }
func (s *streamConn) SetDeadline(time.Time) error      { return nil }
func (s *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (s *streamConn) SetWriteDeadline(time.Time) error { return nil }

type agentAddr string

func (a agentAddr) Network() string { return "agent" }
func (a agentAddr) String() string  { return string(a) }

// Expose makes the harness's unix socket local reachable on the agent's
// node at remotePath: processes the agent starts connect there, and each
// connection is carried over its own stream to a new connection to local.
// It returns once the agent listens. stop ends the listening (connections
// already carried go on until they close).
func (c *Client) Expose(ctx context.Context, remotePath, local string) (stop func(), err error) {
	sctx, cancel := context.WithCancel(context.Background())
	listening := make(chan error, 1)
	go func() {
		first := true
		for sctx.Err() == nil {
			err := c.exposeOne(sctx, remotePath, local, func() {
				if first {
					first = false
					listening <- nil
				}
			})
			if err != nil && first {
				listening <- err
				return
			}
			if err != nil && sctx.Err() == nil {
				time.Sleep(100 * time.Millisecond) // the agent went away; try again
			}
		}
	}()
	select {
	case err = <-listening:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("agent: expose %s at %s: %w", local, remotePath, err)
	}
	return cancel, nil
}

// exposeOne waits on one Expose stream until the agent pairs it with a
// connection, then carries that connection in the background.
func (c *Client) exposeOne(ctx context.Context, remotePath, local string, listening func()) error {
	cctx, cancel := context.WithCancel(ctx)
	stream, err := c.api.Expose(cctx)
	if err != nil {
		cancel()
		return err
	}
	if err := stream.Send(&agentpb.DialFrame{ListenPath: remotePath}); err != nil {
		cancel()
		return err
	}
	for {
		f, err := stream.Recv()
		if err != nil {
			cancel()
			return err
		}
		switch f.GetEvent() {
		case "listening":
			listening()
			continue
		case "accepted":
			c.calls.exposed.Add(1)
		default:
			cancel()
			return fmt.Errorf("unexpected frame %q", f.GetEvent())
		}
		break
	}
	go func() {
		defer cancel()
		conn, err := net.Dial("unix", local)
		if err != nil {
			return // the stream's end closes the node's side
		}
		sc := &streamConn{stream: stream, cancel: cancel, addr: local}
		done := make(chan struct{}, 2)
		go func() { io.Copy(conn, sc); conn.(*net.UnixConn).CloseWrite(); done <- struct{}{} }()
		go func() { io.Copy(sc, conn); sc.CloseWrite(); done <- struct{}{} }()
		<-done
		<-done
		conn.Close()
	}()
	return nil
}

// TokenCredentials attaches the run's token to every call, for the
// harness's side of the connection.
type TokenCredentials string

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (t TokenCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: the
// connection is a port-forward through the API server (TLS to the API
// server, then the kubelet) or a local socket.
func (TokenCredentials) RequireTransportSecurity() bool { return false }
