package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshbench/meshbench/harness/agent/agentpb"
	"github.com/meshbench/meshbench/internal/nsutil"
)

var nameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?$`)

// started is a process the agent started.
type started struct {
	cmd     *exec.Cmd
	cgroups []string
	done    chan struct{}
	exit    string
	// stdout and stderr are the read ends of its output, when captured;
	// Output takes them.
	stdout, stderr *os.File
	taken          bool
}

type processes struct {
	mu   sync.Mutex
	byID map[int]*started
}

func (s *Server) executable() string {
	if s.Executable != "" {
		return s.Executable
	}
	return "/proc/self/exe"
}

// Start implements agentpb.AgentServer.
func (s *Server) Start(ctx context.Context, req *agentpb.StartRequest) (*agentpb.StartResult, error) {
	if !nameRe.MatchString(req.GetName()) {
		return nil, status.Errorf(codes.InvalidArgument, "agent: start: name %q is not a DNS label", req.GetName())
	}
	var h *PodHandles
	if req.GetPodUid() != "" {
		var err error
		if h, err = s.Resolver.Resolve(req.GetPodUid()); err != nil {
			return nil, toStatus(err)
		}
	} else {
		h = &PodHandles{UID: "(testbed)", NetnsPath: req.GetNetnsPath(), CgroupPath: req.GetCgroupPath(), MemoryCgroupPath: req.GetMemoryCgroupPath()}
		if !filepath.IsAbs(h.NetnsPath) {
			return nil, status.Errorf(codes.InvalidArgument, "agent: start: no pod uid and netns path %q is not absolute", h.NetnsPath)
		}
	}
	if h.CgroupPath == "" {
		return nil, status.Errorf(codes.FailedPrecondition, "agent: pod %s has no cgroup v2 directory", h.UID)
	}
	program := s.executable()
	if req.GetProgram() != "" {
		if !s.AllowProgram {
			return nil, status.Errorf(codes.PermissionDenied, "agent: start: program %q: this agent runs only its own executable (no --allow-program)", req.GetProgram())
		}
		program = req.GetProgram()
	}
	leaf := "meshbench-" + req.GetName()
	var cgroups []string
	undo := func() {
		for _, d := range cgroups {
			os.Remove(d)
		}
	}
	for _, parent := range []string{h.CgroupPath, h.MemoryCgroupPath} {
		if parent == "" {
			continue
		}
		d := filepath.Join(parent, leaf)
		if err := os.Mkdir(d, 0o755); err != nil {
			undo()
			if errors.Is(err, os.ErrExist) {
				return nil, status.Errorf(codes.AlreadyExists, "agent: %s: a process named %s runs in the pod already", d, req.GetName())
			}
			return nil, status.Errorf(codes.Internal, "agent: %v", err)
		}
		cgroups = append(cgroups, d)
	}
	cg, err := os.Open(cgroups[0])
	if err != nil {
		undo()
		return nil, status.Errorf(codes.Internal, "agent: %v", err)
	}
	defer cg.Close()

	cmd := exec.Command(program, req.GetArgs()...)
	cmd.Env = req.GetEnv()
	var outR, errR *os.File
	if req.GetCapture() {
		var outW, errW *os.File
		var err error
		if outR, outW, err = os.Pipe(); err == nil {
			if errR, errW, err = os.Pipe(); err != nil {
				outR.Close()
				outW.Close()
			}
		}
		if err != nil {
			undo()
			return nil, status.Errorf(codes.Internal, "agent: %v", err)
		}
		cmd.Stdout, cmd.Stderr = outW, errW
		defer outW.Close()
		defer errW.Close()
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Born in the pod's cgroup (no window in the agent's), in its own
		// process group, and killed if the agent dies.
		UseCgroupFD: true,
		CgroupFD:    int(cg.Fd()),
		Setpgid:     true,
		Pdeathsig:   syscall.SIGKILL,
	}
	if req.GetUid() != 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: req.GetUid(), Gid: req.GetGid()}
	}
	// Pdeathsig follows the thread that forks: the thread nsutil.Do locks
	// lives on (it is unlocked, not ended, once back in the agent's
	// namespace).
	if err := nsutil.Do(h.NetnsPath, cmd.Start); err != nil {
		undo()
		if outR != nil {
			outR.Close()
			errR.Close()
		}
		return nil, status.Errorf(codes.Internal, "agent: start %s in pod %s: %v", req.GetName(), h.UID, err)
	}
	pid := cmd.Process.Pid
	// The v1 memory controller has no clone-into: move it right away,
	// before it allocates much.
	if len(cgroups) > 1 {
		if err := os.WriteFile(filepath.Join(cgroups[1], "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			undo()
			return nil, status.Errorf(codes.Internal, "agent: memory cgroup: %v", err)
		}
	}
	p := &started{cmd: cmd, cgroups: cgroups, done: make(chan struct{}), stdout: outR, stderr: errR}
	go func() {
		err := cmd.Wait()
		p.exit = "exit status 0"
		if err != nil {
			p.exit = err.Error()
		}
		close(p.done)
		// Nothing of it is left to stop: its cgroups go now, so that a
		// process of the same name can start after it.
		p.removeCgroups()
	}()
	s.procs.mu.Lock()
	if s.procs.byID == nil {
		s.procs.byID = map[int]*started{}
	}
	s.procs.byID[pid] = p
	s.procs.mu.Unlock()
	return &agentpb.StartResult{Pid: int32(pid), CgroupPath: cgroups[0]}, nil
}

// Stop implements agentpb.AgentServer.
func (s *Server) Stop(ctx context.Context, req *agentpb.StopRequest) (*agentpb.StopResult, error) {
	s.procs.mu.Lock()
	p := s.procs.byID[int(req.GetPid())]
	delete(s.procs.byID, int(req.GetPid()))
	s.procs.mu.Unlock()
	if p == nil {
		return nil, status.Errorf(codes.NotFound, "agent: no process %d of this agent", req.GetPid())
	}
	if err := p.stop(ctx); err != nil {
		return nil, status.Errorf(codes.Internal, "agent: stop %d: %v", req.GetPid(), err)
	}
	return &agentpb.StopResult{Exit: p.exit}, nil
}

// stop kills the process's group, waits for it and removes its cgroups.
func (p *started) stop(ctx context.Context) error {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-ctx.Done():
		return fmt.Errorf("process %d did not end: %w", p.cmd.Process.Pid, ctx.Err())
	}
	return p.removeCgroups()
}

// removeCgroups removes the process's cgroups once it has been reaped.
func (p *started) removeCgroups() error {
	var errs []error
	for _, d := range p.cgroups {
		// A cgroup is removable once its last process is reaped; the
		// kernel may take a moment after the wait.
		var err error
		for range 50 {
			if err = os.Remove(d); err == nil || errors.Is(err, os.ErrNotExist) {
				err = nil
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// StopAll stops every process the agent started and detaches every BPF set
// it holds: on SIGTERM, and when the agent's server stops.
func (s *Server) StopAll(ctx context.Context) error {
	s.procs.mu.Lock()
	all := s.procs.byID
	s.procs.byID = nil
	s.procs.mu.Unlock()
	var errs []error
	for _, p := range all {
		if err := p.stop(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	s.exposedMu.Lock()
	for path, ex := range s.exposed {
		ex.ln.Close()
		os.Remove(path)
	}
	s.exposed = nil
	s.exposedMu.Unlock()
	errs = append(errs, s.detachAll(ctx))
	if _, err := s.RemoveNodeRules(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (s *Server) lookup(pid int32) (*started, error) {
	s.procs.mu.Lock()
	defer s.procs.mu.Unlock()
	p := s.procs.byID[int(pid)]
	if p == nil {
		return nil, status.Errorf(codes.NotFound, "agent: no process %d of this agent", pid)
	}
	return p, nil
}

// Signal implements agentpb.AgentServer.
func (s *Server) Signal(ctx context.Context, req *agentpb.SignalRequest) (*agentpb.SignalResult, error) {
	p, err := s.lookup(req.GetPid())
	if err != nil {
		return nil, err
	}
	select {
	case <-p.done:
		return &agentpb.SignalResult{}, nil // already ended
	default:
	}
	if err := p.cmd.Process.Signal(syscall.Signal(req.GetSignal())); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return nil, status.Errorf(codes.Internal, "agent: signal %d: %v", req.GetPid(), err)
	}
	return &agentpb.SignalResult{}, nil
}

// Output implements agentpb.AgentServer.
func (s *Server) Output(req *agentpb.OutputRequest, stream agentpb.Agent_OutputServer) error {
	p, err := s.lookup(req.GetPid())
	if err != nil {
		return err
	}
	s.procs.mu.Lock()
	taken := p.taken
	p.taken = true
	s.procs.mu.Unlock()
	if taken {
		return status.Errorf(codes.FailedPrecondition, "agent: output of %d is streamed to another caller", req.GetPid())
	}
	var mu sync.Mutex
	send := func(c *agentpb.OutputChunk) error {
		mu.Lock()
		defer mu.Unlock()
		return stream.Send(c)
	}
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	for _, f := range []*os.File{p.stdout, p.stderr} {
		if f == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer f.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := f.Read(buf)
				if n > 0 {
					c := &agentpb.OutputChunk{}
					if f == p.stdout {
						c.Stdout = buf[:n]
					} else {
						c.Stderr = buf[:n]
					}
					if serr := send(c); serr != nil {
						errc <- serr
						return
					}
				}
				if err != nil {
					return // EOF: every writer (the process group) closed it
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
	}
	select {
	case <-p.done:
	case <-stream.Context().Done():
		return stream.Context().Err()
	}
	return send(&agentpb.OutputChunk{Exited: true, Exit: p.exit})
}
