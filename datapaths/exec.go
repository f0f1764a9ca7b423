package datapaths

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/meshbench/meshbench/harness/testbed"
)

// Tail is an io.Writer that keeps the last Max bytes written to it, for a
// process's standard error in error messages.
type Tail struct {
	Max int
	mu  sync.Mutex
	buf []byte
}

// Write implements io.Writer.
func (t *Tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.Max; over > 0 {
		t.buf = append([]byte(nil), t.buf[over:]...)
	}
	return len(p), nil
}

// String returns what is kept, trimmed.
func (t *Tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.buf))
}

// WaitReady polls probe every 20 ms until it succeeds. It fails early, with
// the process's exit status and the tail of its stderr, when proc exits, and
// with probe's last error when ctx ends. what names the process in errors
// ("sidecar in pod client").
func WaitReady(ctx context.Context, what string, proc *testbed.Process, stderr *Tail, probe func(context.Context) error) error {
	for {
		err := probe(ctx)
		if err == nil {
			return nil
		}
		if proc.Exited() {
			return fmt.Errorf("%s exited: %v: %s", what, proc.Err(), stderr.String())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w", what, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// UndoOnError undoes a failed install: when *err is set, it runs undo
// (even if ctx was cancelled) and joins its error to *err. Datapaths call
// it deferred at the top of Install:
//
//	defer datapaths.UndoOnError(ctx, &err, d.Uninstall)
func UndoOnError(ctx context.Context, err *error, undo func(context.Context) error) {
	if *err != nil {
		*err = errors.Join(*err, undo(context.WithoutCancel(ctx)))
	}
}
