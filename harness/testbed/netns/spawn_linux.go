package netns

import (
	"fmt"
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// Processes are forked from one OS thread that stays locked for the life of
// the harness. Pdeathsig fires when the thread that forked a child ends, not
// when the process does: a child forked from a pooled thread would be killed
// whenever some goroutine later locked that thread and exited without
// unlocking it (which ends the thread).
type spawnReq struct {
	netns string
	fn    func() error
	done  chan error
}

var (
	spawnMu sync.Mutex
	spawnCh chan spawnReq
)

// spawnIn runs fn (which forks a process) on the spawner thread while that
// thread is in the network namespace at path, so the child starts there.
func spawnIn(path string, fn func() error) error {
	spawnMu.Lock()
	if spawnCh == nil {
		spawnCh = make(chan spawnReq)
		go spawner(spawnCh)
	}
	ch := spawnCh
	spawnMu.Unlock()
	req := spawnReq{netns: path, fn: fn, done: make(chan error, 1)}
	ch <- req
	return <-req.done
}

func spawner(ch chan spawnReq) {
	// Never unlocked: the thread ends with the harness.
	runtime.LockOSThread()
	home, herr := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	for req := range ch {
		if herr != nil {
			req.done <- fmt.Errorf("open spawner netns: %w", herr)
			continue
		}
		target, err := os.Open(req.netns)
		if err != nil {
			req.done <- fmt.Errorf("open netns %s: %w", req.netns, err)
			continue
		}
		err = unix.Setns(int(target.Fd()), unix.CLONE_NEWNET)
		target.Close()
		if err != nil {
			req.done <- fmt.Errorf("enter netns %s: %w", req.netns, err)
			continue
		}
		ferr := req.fn()
		// Going back home also drops this thread's hold on the namespace,
		// which would otherwise keep it alive after it is deleted.
		if err := unix.Setns(home, unix.CLONE_NEWNET); err != nil {
			// Retire this thread without ending it (its children would get
			// their Pdeathsig): the next request starts a new spawner.
			spawnMu.Lock()
			if spawnCh == ch {
				spawnCh = nil
			}
			spawnMu.Unlock()
			req.done <- fmt.Errorf("leave netns %s: %w (after: %v)", req.netns, err, ferr)
			go func() {
				for req := range ch { // requests that raced the retirement
					req.done <- fmt.Errorf("spawner retired")
				}
			}()
			select {}
		}
		req.done <- ferr
	}
}
