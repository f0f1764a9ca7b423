package kubeenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// proc is a process the environment started and tracks until it exits.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string // file holding its stdout and stderr
	done chan struct{}
	err  error // Wait's result, set before done closes
}

// startProc starts argv with its output in logDir/name.log, in the cgroup
// rel (relative to each hierarchy's root) when rel is not "", and with
// SIGKILL as its parent-death signal, so that it dies with the process that
// runs the environment, even on a panic.
func startProc(name string, argv []string, env []string, logDir string, cg *cgroups, rel string) (*proc, error) {
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer f.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := spawn(cmd.Start); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	if cg != nil && rel != "" {
		if err := cg.join(rel, cmd.Process.Pid); err != nil {
			p.kill()
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
	}
	return p, nil
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// failure describes how the process ended, with the end of its log.
func (p *proc) failure() error {
	b, _ := os.ReadFile(p.log)
	return fmt.Errorf("%s exited (%v); its log ends:\n%s", p.name, p.err, tail(string(b)))
}

// kill sends SIGKILL and waits for the process to end.
func (p *proc) kill() {
	if p == nil || p.exited() {
		return
	}
	p.cmd.Process.Kill()
	<-p.done
}

// stop asks the process to end with SIGTERM, waits up to grace, then kills
// it.
func (p *proc) stop(grace time.Duration) {
	if p == nil || p.exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.kill()
	}
}

// poll calls check every interval until it returns true or an error, ctx
// ends or timeout passes; while it waits, any of procs exiting fails it.
func poll(ctx context.Context, what string, timeout time.Duration, procs []*proc, check func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		for _, p := range procs {
			if p.exited() {
				return fmt.Errorf("wait for %s: %w", what, p.failure())
			}
		}
		ok, err := check(ctx)
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w (last: %v)", what, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

var errStopped = errors.New("environment stopped")

// The parent-death signal is sent when the thread that forked the child
// ends, not the process: Go ends threads whose goroutine exits while
// locked to them (as namespace code does), and any such thread may have
// forked one of ours. So every process is forked from one thread, locked by
// a goroutine that never returns and never changes namespace.
var (
	spawnOnce sync.Once
	spawnCh   chan func()
)

// spawn runs start on the spawning thread.
func spawn(start func() error) error {
	spawnOnce.Do(func() {
		spawnCh = make(chan func())
		go func() {
			runtime.LockOSThread()
			for f := range spawnCh {
				f()
			}
		}()
	})
	errc := make(chan error, 1)
	spawnCh <- func() { errc <- start() }
	return <-errc
}
