package workload

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// errStopped is the error of a dial attempted after the load client was
// stopped.
var errStopped = errors.New("load client stopped")

// abortDialer dials the load client's connections and can close them all
// at once, so that requests in flight end promptly when the client is
// interrupted instead of waiting for their timeout.
type abortDialer struct {
	dialer net.Dialer
	ctx    context.Context // cancelled by abort: stops dials in progress
	cancel context.CancelFunc
	opened atomic.Int64
	// sent and received count the bytes the transport wrote to and read
	// from every connection, HTTP framing included.
	sent, received atomic.Int64

	mu      sync.Mutex
	conns   map[*trackedConn]struct{}
	aborted bool
}

func newAbortDialer(keepAlive time.Duration) *abortDialer {
	ctx, cancel := context.WithCancel(context.Background())
	return &abortDialer{
		dialer: net.Dialer{KeepAlive: keepAlive},
		ctx:    ctx,
		cancel: cancel,
		conns:  map[*trackedConn]struct{}{},
	}
}

// DialContext dials addr and tracks the connection until it is closed.
func (d *abortDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(d.ctx, cancel)
	defer stop()
	c, err := d.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, d: d}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.aborted {
		c.Close()
		return nil, &net.OpError{Op: "dial", Net: network, Err: errStopped}
	}
	d.conns[tc] = struct{}{}
	d.opened.Add(1)
	return tc, nil
}

// abort closes every open connection and fails every later dial.
func (d *abortDialer) abort() {
	d.cancel()
	d.mu.Lock()
	d.aborted = true
	conns := d.conns
	d.conns = map[*trackedConn]struct{}{}
	d.mu.Unlock()
	for c := range conns {
		c.Conn.Close()
	}
}

// trackedConn forgets itself when closed.
type trackedConn struct {
	net.Conn
	d *abortDialer
}

// Close closes the connection and stops tracking it.
func (c *trackedConn) Close() error {
	c.d.mu.Lock()
	delete(c.d.conns, c)
	c.d.mu.Unlock()
	return c.Conn.Close()
}
