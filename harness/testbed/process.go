package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// StopGrace is how long Stop waits after SIGTERM before SIGKILL.
const StopGrace = 3 * time.Second

// Process is a process started in a pod or node.
type Process struct {
	Name string
	Role string
	// Pod is "" for a process started on a node.
	Pod  string
	Node string
	PID  int

	cmd *exec.Cmd
	// signal delivers signals to a process that cmd does not run (see
	// NewProcess).
	signal func(os.Signal) error
	done   chan struct{}
	err    error
}

// StartCmd starts cmd and returns its tracked Process. Providers call it once
// the command is set up to run in the right namespace and cgroup.
func StartCmd(cmd *exec.Cmd, name, role, pod, node string) (*Process, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{Name: name, Role: role, Pod: pod, Node: node, PID: cmd.Process.Pid, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// NewProcess returns a tracked Process that runs somewhere this package does
// not start it: signal delivers the signals sent to it, and the caller calls
// exited once the process has ended, with its exit error (nil for a zero
// exit status); later calls do nothing. Fake providers use it. Rusage is nil
// for such a process.
func NewProcess(name, role, pod, node string, pid int, signal func(os.Signal) error) (p *Process, exited func(error)) {
	p = &Process{Name: name, Role: role, Pod: pod, Node: node, PID: pid, signal: signal, done: make(chan struct{})}
	var once sync.Once
	return p, func(err error) {
		once.Do(func() {
			p.err = err
			close(p.done)
		})
	}
}

// Done is closed when the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err returns the process's exit error once Done is closed (nil for a zero
// exit status).
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process; it is not an error if it already exited.
func (p *Process) Signal(sig os.Signal) error {
	if p.Exited() {
		return nil
	}
	var err error
	if p.cmd != nil {
		err = p.cmd.Process.Signal(sig)
	} else {
		err = p.signal(sig)
	}
	if err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s (pid %d): %w", p.Name, p.PID, err)
	}
	return nil
}

// Stop sends SIGTERM, waits up to StopGrace (or until ctx is done) and then
// sends SIGKILL, and returns once the process is reaped.
func (p *Process) Stop(ctx context.Context) error {
	if p.Exited() {
		return nil
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	t := time.NewTimer(StopGrace)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("stop %s (pid %d): not reaped 5s after SIGKILL", p.Name, p.PID)
	}
}

// Rusage returns the exited process's resource usage (CPU time, context
// switches, peak RSS), or nil while it runs.
func (p *Process) Rusage() *syscall.Rusage {
	if !p.Exited() || p.cmd == nil || p.cmd.ProcessState == nil {
		return nil
	}
	ru, _ := p.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return ru
}

// StopAll stops procs at once (Stop each: SIGTERM, then SIGKILL after
// StopGrace) and joins their errors.
func StopAll(ctx context.Context, procs []*Process) error {
	errs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.Stop(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
