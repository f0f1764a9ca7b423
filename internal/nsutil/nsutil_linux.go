package nsutil

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs fn on a locked OS thread that has joined the network namespace at
// path (a bind mount such as /var/run/netns/NAME or /proc/PID/ns/net). Sockets
// that fn creates belong to that namespace for their whole life, and files
// fn opens under /proc/thread-self/net describe it. The thread returns to its
// original namespace afterwards; if it cannot, the thread is discarded
// instead of being reused.
func Do(path string, fn func() error) error {
	target, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer target.Close()

	errc := make(chan error, 1)
	// A fresh goroutine keeps the caller's thread out of the switch.
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: the runtime ends it with the goroutine.
			errc <- fmt.Errorf("leave netns %s: %w (after: %v)", path, err, ferr)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Dialer returns a DialContext function whose sockets are created in the
// network namespace at path, for use in an http.Transport.
func Dialer(path string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return Dial(ctx, path, network, addr)
	}
}

// Dial connects to addr from inside the network namespace at path. addr
// must be a literal IP and port, so that no name lookup runs on another
// thread.
func Dial(ctx context.Context, path, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := Do(path, func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Listen opens a listener inside the network namespace at path.
func Listen(path, network, addr string) (net.Listener, error) {
	var l net.Listener
	err := Do(path, func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}
