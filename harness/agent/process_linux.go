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
	h, err := s.Resolver.Resolve(req.GetPodUid())
	if err != nil {
		return nil, toStatus(err)
	}
	if h.CgroupPath == "" {
		return nil, status.Errorf(codes.FailedPrecondition, "agent: pod %s has no cgroup v2 directory", h.UID)
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

	cmd := exec.Command(s.executable(), req.GetArgs()...)
	cmd.Env = req.GetEnv()
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
	p := &started{cmd: cmd, cgroups: cgroups, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.exit = "exit status 0"
		if err != nil {
			p.exit = err.Error()
		}
		close(p.done)
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

// StopAll stops every process the agent started: on SIGTERM, and when the
// agent's server stops.
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
	return errors.Join(errs...)
}
