package agent

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshbench/meshbench/harness/agent/agentpb"
	"github.com/meshbench/meshbench/harness/metrics"
	"github.com/meshbench/meshbench/internal/nsutil"
)

// Tools are the programs Exec runs: the node's network tools, nothing
// else.
var Tools = []string{"iptables", "iptables-save", "iptables-restore", "tc", "ip"}

// toolDirs are searched, inside HostRoot, for a tool.
var toolDirs = []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"}

// Server implements the agent's gRPC API.
//
// Tools run from the node's own filesystem. In a DaemonSet the node's root
// is mounted (read-only) at HostRoot and each tool runs chrooted there, so
// the image carries no iptables or tc of its own and the rules are written
// by the same iptables (nft or legacy) the node's kube-proxy uses. On the
// embedded testbed HostRoot is "" (the agent runs on the host). The tool
// enters the pod's network namespace by being forked from a thread that
// has joined it (no nsenter needed in the image).
type Server struct {
	agentpb.UnimplementedAgentServer
	Resolver *Resolver
	// HostRoot is where the node's root filesystem is; "" for /.
	HostRoot string
	// Token every call must carry.
	Token string
	// ExecTimeout bounds one Exec. Default 30s.
	ExecTimeout time.Duration
	// Executable is the program Start runs. Default: the agent's own
	// (/proc/self/exe).
	Executable string
	// AllowProgram lets Start run the program the request names (the
	// embedded testbed's agents, `--allow-program`).
	AllowProgram bool
	// RunID is the run the agent serves: the rules tagged with it in the
	// node's namespace (iptables.NodeComment) are removed when the agent
	// starts and when it stops. "": none.
	RunID string

	procs processes
	bpf   bpfSets

	exposedMu sync.Mutex
	exposed   map[string]*exposed
}

// GRPCServer returns a gRPC server serving s, with every call
// authenticated by s.Token.
func (s *Server) GRPCServer(opts ...grpc.ServerOption) (*grpc.Server, error) {
	if len(s.Token) < 16 {
		return nil, errors.New("agent: token shorter than 16 bytes")
	}
	opts = append(opts, grpc.ChainUnaryInterceptor(s.authenticate), grpc.ChainStreamInterceptor(s.authenticateStream))
	g := grpc.NewServer(opts...)
	agentpb.RegisterAgentServer(g, s)
	return g, nil
}

func (s *Server) authenticate(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := s.checkToken(ctx); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (s *Server) authenticateStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := s.checkToken(ss.Context()); err != nil {
		return err
	}
	return h(srv, ss)
}

func (s *Server) checkToken(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	var got string
	if v := md.Get("authorization"); len(v) == 1 {
		got, _ = strings.CutPrefix(v[0], "Bearer ")
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(s.Token)) != 1 {
		return status.Error(codes.Unauthenticated, "agent: missing or wrong token")
	}
	return nil
}

// Resolve implements agentpb.AgentServer.
func (s *Server) Resolve(ctx context.Context, req *agentpb.ResolveRequest) (*agentpb.PodHandles, error) {
	h, err := s.Resolver.Resolve(req.GetPodUid())
	if err != nil {
		return nil, toStatus(err)
	}
	out := &agentpb.PodHandles{
		Uid: h.UID, NetnsPath: h.NetnsPath, HostNetwork: h.HostNetwork,
		CgroupPath: h.CgroupPath, MemoryCgroupPath: h.MemoryCgroupPath,
		PodVeth: h.PodVeth, Mac: h.MAC, HostVeth: h.HostVeth, HostVethMac: h.HostVethMAC,
	}
	if h.IP.IsValid() {
		out.Ip = h.IP.String()
	}
	for _, p := range h.PIDs {
		out.Pids = append(out.Pids, int32(p))
	}
	return out, nil
}

// Exec implements agentpb.AgentServer.
func (s *Server) Exec(ctx context.Context, req *agentpb.ExecRequest) (*agentpb.ExecResult, error) {
	argv := req.GetArgv()
	if len(argv) == 0 || !isTool(argv[0]) {
		return nil, status.Errorf(codes.InvalidArgument, "agent: exec %q: only %s", first(argv), strings.Join(Tools, ", "))
	}
	path, err := s.lookTool(argv[0])
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	netns, err := s.netns(req.GetPodUid(), req.GetNetnsPath())
	if err != nil {
		return nil, err
	}
	timeout := s.ExecTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path, argv[1:]...)
	// Multi-call binaries (xtables-nft-multi) dispatch on argv[0].
	cmd.Args[0] = argv[0]
	cmd.Stdin = bytes.NewReader(req.GetStdin())
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = []string{"PATH=" + strings.Join(toolDirs, ":")}
	if s.HostRoot != "" && s.HostRoot != "/" {
		cmd.Path = strings.TrimPrefix(path, filepath.Clean(s.HostRoot))
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: s.HostRoot}
		cmd.Dir = "/"
	}
	// Started from a thread inside netns: the tool is born there.
	err = nsutil.Do(netns, cmd.Start)
	if err == nil {
		err = cmd.Wait()
	}
	res := &agentpb.ExecResult{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit) && ctx.Err() == nil:
		res.ExitCode = int32(exit.ExitCode())
	case ctx.Err() != nil:
		return nil, status.Errorf(codes.DeadlineExceeded, "agent: %s: %v", argv[0], ctx.Err())
	default:
		return nil, status.Errorf(codes.Internal, "agent: %s: %v", argv[0], err)
	}
	return res, nil
}

// netns returns the network namespace a call names: the pod's, the one at
// path, or the node's.
func (s *Server) netns(podUID, path string) (string, error) {
	switch {
	case podUID != "":
		h, err := s.Resolver.Resolve(podUID)
		if err != nil {
			return "", toStatus(err)
		}
		return h.NetnsPath, nil
	case path != "":
		if !filepath.IsAbs(path) {
			return "", status.Errorf(codes.InvalidArgument, "agent: netns path %q is not absolute", path)
		}
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return "", status.Errorf(codes.NotFound, "agent: netns %s is gone", path)
		}
		return path, nil
	}
	return s.Resolver.hostNetns(), nil
}

// Dial implements agentpb.AgentServer.
func (s *Server) Dial(stream agentpb.Agent_DialServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	netns, err := s.netns(first.GetPodUid(), first.GetNetnsPath())
	if err != nil {
		return err
	}
	ap, err := netip.ParseAddrPort(first.GetAddress())
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "agent: dial %q: want a literal IP and port", first.GetAddress())
	}
	ctx := stream.Context()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	c, err := nsutil.Dial(dctx, netns, "tcp", ap.String())
	cancel()
	if err != nil {
		return status.Errorf(codes.Unavailable, "agent: dial %s in %s: %v", ap, netns, err)
	}
	defer c.Close()
	if err := stream.Send(&agentpb.DialFrame{}); err != nil {
		return err
	}
	return pipe(ctx, stream, c, ap.String())
}

// frameStream is either side's view of a Dial or Expose stream.
type frameStream interface {
	Send(*agentpb.DialFrame) error
	Recv() (*agentpb.DialFrame, error)
}

// pipe carries c's bytes over stream both ways: the client's frames are
// written to c until the client closes its side (then c's write side is
// shut), and what c reads is sent until c's read side ends.
func pipe(ctx context.Context, stream frameStream, c net.Conn, what string) error {
	go func() {
		for {
			f, err := stream.Recv()
			if err != nil {
				if cw, ok := c.(interface{ CloseWrite() error }); ok && errors.Is(err, io.EOF) {
					cw.CloseWrite()
				} else {
					c.Close()
				}
				return
			}
			if _, err := c.Write(f.GetData()); err != nil {
				c.Close()
				return
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if serr := stream.Send(&agentpb.DialFrame{Data: buf[:n]}); serr != nil {
				return serr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return status.Errorf(codes.Aborted, "agent: connection to %s: %v", what, err)
		}
	}
}

// exposed is a unix socket the agent listens on for the harness.
type exposed struct {
	ln      net.Listener
	conns   chan net.Conn
	waiting int
}

// Expose implements agentpb.AgentServer.
func (s *Server) Expose(stream agentpb.Agent_ExposeServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	path := first.GetListenPath()
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return status.Errorf(codes.InvalidArgument, "agent: expose %q: want a clean absolute path", path)
	}
	ex, err := s.listen(path)
	if err != nil {
		return err
	}
	ctx := stream.Context()
	if err := stream.Send(&agentpb.DialFrame{Event: "listening"}); err != nil {
		s.unwait(path, ex)
		return err
	}
	select {
	case c, ok := <-ex.conns:
		s.exposedMu.Lock()
		ex.waiting--
		s.exposedMu.Unlock()
		if !ok {
			return status.Errorf(codes.Unavailable, "agent: %s no longer listens", path)
		}
		defer c.Close()
		if err := stream.Send(&agentpb.DialFrame{Event: "accepted"}); err != nil {
			return err
		}
		return pipe(ctx, stream, c, path)
	case <-ctx.Done():
		s.unwait(path, ex)
		return ctx.Err()
	}
}

// listen returns the listener at path, creating it (and its directory)
// when no stream waits on it, and counts the caller as waiting.
func (s *Server) listen(path string) (*exposed, error) {
	s.exposedMu.Lock()
	defer s.exposedMu.Unlock()
	if s.exposed == nil {
		s.exposed = map[string]*exposed{}
	}
	ex := s.exposed[path]
	if ex == nil {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, status.Errorf(codes.Internal, "agent: %v", err)
		}
		os.Remove(path) // a stale socket of a dead agent
		ln, err := net.Listen("unix", path)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "agent: %v", err)
		}
		// The processes the agent starts as other users (the proxies, uid
		// 1337) connect to it.
		if err := os.Chmod(path, 0o777); err != nil {
			ln.Close()
			return nil, status.Errorf(codes.Internal, "agent: %v", err)
		}
		ex = &exposed{ln: ln, conns: make(chan net.Conn)}
		s.exposed[path] = ex
		go func() {
			defer close(ex.conns)
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				ex.conns <- c
			}
		}()
	}
	ex.waiting++
	return ex, nil
}

// unwait counts a waiting stream gone unpaired; with none left waiting,
// the agent stops listening and removes the socket.
func (s *Server) unwait(path string, ex *exposed) {
	s.exposedMu.Lock()
	defer s.exposedMu.Unlock()
	ex.waiting--
	if ex.waiting > 0 || s.exposed[path] != ex {
		return
	}
	delete(s.exposed, path)
	ex.ln.Close()
	os.Remove(path)
	// An accepted connection no stream will take.
	go func() {
		for c := range ex.conns {
			c.Close()
		}
	}()
}

// lookTool finds a tool in the node's root, following symlinks (Debian's
// iptables → /etc/alternatives/iptables → /usr/sbin/xtables-nft-multi)
// inside that root, as the chrooted tool will see them. It returns the
// path in the agent's view.
func (s *Server) lookTool(name string) (string, error) {
	root := s.HostRoot
	if root == "" {
		root = "/"
	}
	for _, d := range toolDirs {
		p, err := securejoin.SecureJoin(root, filepath.Join(d, name))
		if err != nil {
			continue
		}
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("agent: %s not found in the node's %s (root %s)", name, strings.Join(toolDirs, ", "), root)
}

func (r *Resolver) hostNetns() string {
	if r.HostNetns != "" {
		return r.HostNetns
	}
	return "/proc/self/ns/net"
}

func isTool(name string) bool {
	for _, t := range Tools {
		if name == t {
			return true
		}
	}
	return false
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func toStatus(err error) error {
	if errors.Is(err, ErrNotOnNode) {
		return status.Error(codes.NotFound, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// Snapshot implements agentpb.AgentServer.
func (s *Server) Snapshot(ctx context.Context, req *agentpb.SnapshotRequest) (*agentpb.SnapshotResult, error) {
	pids := make([]int, len(req.GetPids()))
	for i, p := range req.GetPids() {
		pids[i] = int(p)
	}
	snap, err := metrics.TakeSnapshot(ctx, pids, req.GetNetnsPaths())
	if err != nil {
		return nil, status.Errorf(codes.Internal, "agent: %v", err)
	}
	b, err := json.Marshal(snap)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "agent: %v", err)
	}
	return &agentpb.SnapshotResult{Json: b}, nil
}

// NodeInfo implements agentpb.AgentServer.
func (s *Server) NodeInfo(ctx context.Context, req *agentpb.NodeInfoRequest) (*agentpb.NodeInfoResult, error) {
	out := &agentpb.NodeInfoResult{KubeProxyMode: "none seen"}
	nat, err := s.Exec(ctx, &agentpb.ExecRequest{Argv: []string{"iptables-save", "-t", "nat"}})
	switch {
	case err == nil && nat.GetExitCode() == 0 && bytes.Contains(nat.GetStdout(), []byte(":KUBE-SERVICES")):
		out.KubeProxyMode = "iptables"
	default:
		if l, err := s.Exec(ctx, &agentpb.ExecRequest{Argv: []string{"ip", "-o", "link", "show", "kube-ipvs0"}}); err == nil && l.GetExitCode() == 0 {
			out.KubeProxyMode = "ipvs"
		}
	}
	root := s.HostRoot
	if root == "" {
		root = "/"
	}
	dir, err := securejoin.SecureJoin(root, "/etc/cni/net.d")
	if err != nil {
		return out, nil
	}
	out.CniConfig, out.CniPlugins = readCNI(dir)
	return out, nil
}

// readCNI returns the first .conflist, .conf or .json file of dir in name
// order (the one container runtimes use) and its plugin types.
func readCNI(dir string) (string, []string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", nil
	}
	for _, e := range entries { // sorted by name
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".conflist" && ext != ".conf" && ext != ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return e.Name(), nil
		}
		var conf struct {
			Type    string `json:"type"`
			Plugins []struct {
				Type string `json:"type"`
			} `json:"plugins"`
		}
		if json.Unmarshal(b, &conf) != nil {
			return e.Name(), nil
		}
		var types []string
		if conf.Type != "" {
			types = append(types, conf.Type)
		}
		for _, p := range conf.Plugins {
			types = append(types, p.Type)
		}
		return e.Name(), types
	}
	return "", nil
}
