package proxy

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Errors of getting an upstream connection.
var (
	errOverflowPending = errors.New("pending requests overflow")
	errNoHealthy       = errors.New("no healthy upstream")
	errConnect         = errors.New("upstream connect error")
)

// host is one upstream endpoint with its idle keep-alive connections. It
// outlives configuration changes as long as its address stays.
type host struct {
	addr     netip.AddrPort
	stats    *HostCounters // outlive the host: kept by the registry
	hostname string
	active   atomic.Int64 // requests in flight, for LEAST_REQUEST
	idle     []*upConn    // guarded by cluster.mu
	removed  bool         // guarded by cluster.mu
}

// cluster is the runtime state of one cluster: its configuration, endpoints,
// connection pools and circuit breakers.
type cluster struct {
	name  string
	stats *Counters
	// hostStats returns the counters of one endpoint of this cluster.
	hostStats func(netip.AddrPort) *HostCounters

	cfg    atomic.Pointer[clusterCfg]
	picker atomic.Pointer[picker]

	mu       sync.Mutex
	hosts    map[netip.AddrPort]*host
	cxActive int64 // open upstream connections, idle ones included
	pending  int64
	wake     chan struct{} // closed when a connection is released

	requests atomic.Int64
	retries  atomic.Int64
	closed   bool // removed from the configuration; guarded by mu
}

func newCluster(name string, stats *Counters, hostStats func(netip.AddrPort) *HostCounters) *cluster {
	return &cluster{name: name, stats: stats, hostStats: hostStats, hosts: map[netip.AddrPort]*host{}, wake: make(chan struct{})}
}

// newHost returns a host of c at addr, with its counters.
func (c *cluster) newHost(addr netip.AddrPort) *host {
	h := &host{addr: addr}
	if c.hostStats != nil {
		h.stats = c.hostStats(addr)
	} else {
		h.stats = &HostCounters{}
	}
	return h
}

// update applies a new configuration and endpoint set.
func (c *cluster) update(cfg *clusterCfg, eps []endpoint) {
	c.mu.Lock()
	keep := map[netip.AddrPort]bool{}
	var healthy []*host
	for _, e := range eps {
		h, ok := c.hosts[e.addr]
		if !ok {
			h = c.newHost(e.addr)
			c.hosts[e.addr] = h
		}
		h.hostname = e.hostname
		keep[e.addr] = true
		if e.healthy {
			healthy = append(healthy, h)
		}
	}
	var closing []*upConn
	for a, h := range c.hosts {
		if !keep[a] && !cfg.originalDst {
			h.removed = true
			closing = append(closing, h.idle...)
			c.cxActive -= int64(len(h.idle))
			h.idle = nil
			delete(c.hosts, a)
		}
	}
	c.cfg.Store(cfg)
	c.picker.Store(newPicker(cfg.lb, healthy))
	c.broadcastLocked()
	c.mu.Unlock()
	for _, uc := range closing {
		uc.conn.Close()
		c.stats.CxActive.Add(-1)
	}
}

func (c *cluster) broadcastLocked() {
	close(c.wake)
	c.wake = make(chan struct{})
}

// releasedLocked wakes the pending requests, if any, after a connection
// was released (a new channel per release cost an allocation per request).
func (c *cluster) releasedLocked() {
	if c.pending > 0 {
		c.broadcastLocked()
	}
}

// upConn is a pooled upstream HTTP/1.1 connection.
type upConn struct {
	conn   net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	host   *host
	reused bool
}

// dial opens an upstream connection, counted against the cluster's
// connection limit by the caller.
func (c *cluster) dial(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
	cfg := c.cfg.Load()
	d := net.Dialer{Timeout: cfg.connectTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		c.stats.CxConnectFail.Add(1)
		return nil, errors.Join(errConnect, err)
	}
	c.stats.CxTotal.Add(1)
	c.stats.CxActive.Add(1)
	return plain(conn), nil
}

// get returns a connection to h: an idle one, a new one within the
// connection limit, or (at the limit) waits as a pending request for one to
// be released, within the pending limit and ctx.
func (c *cluster) get(ctx context.Context, h *host) (*upConn, error) {
	counted := false
	c.mu.Lock()
	for {
		if n := len(h.idle); n > 0 {
			uc := h.idle[n-1]
			h.idle = h.idle[:n-1]
			c.mu.Unlock()
			uc.reused = true
			return uc, nil
		}
		cfg := c.cfg.Load()
		if c.cxActive < cfg.maxConnections {
			c.cxActive++
			c.mu.Unlock()
			conn, err := c.dial(ctx, h.addr)
			if err != nil {
				c.mu.Lock()
				c.cxActive--
				c.releasedLocked()
				c.mu.Unlock()
				return nil, err
			}
			h.stats.CxTotal.Add(1)
			conn = &countingConn{Conn: conn, in: &c.stats.BytesIn, out: &c.stats.BytesOut, hin: &h.stats.BytesIn, hout: &h.stats.BytesOut}
			return &upConn{conn: conn, br: bufio.NewReaderSize(conn, 16<<10), bw: bufio.NewWriterSize(conn, 16<<10), host: h}, nil
		}
		if !counted {
			c.stats.OverflowCx.Add(1)
			counted = true
		}
		// At the limit: an idle connection to another host can make room.
		if victim := c.idleVictimLocked(); victim != nil {
			c.cxActive--
			c.mu.Unlock()
			victim.conn.Close()
			c.stats.CxActive.Add(-1)
			c.mu.Lock()
			continue
		}
		if c.pending >= cfg.maxPending {
			c.mu.Unlock()
			c.stats.OverflowPending.Add(1)
			return nil, errOverflowPending
		}
		c.pending++
		wake := c.wake
		c.mu.Unlock()
		var err error
		select {
		case <-wake:
		case <-ctx.Done():
			err = ctx.Err()
		}
		c.mu.Lock()
		c.pending--
		if err != nil {
			c.mu.Unlock()
			return nil, err
		}
	}
}

func (c *cluster) idleVictimLocked() *upConn {
	for _, h := range c.hosts {
		if n := len(h.idle); n > 0 {
			uc := h.idle[0]
			h.idle = h.idle[1:]
			return uc
		}
	}
	return nil
}

// put returns a connection to its host's idle pool, or closes it when it
// cannot be reused.
func (c *cluster) put(uc *upConn, reusable bool) {
	c.mu.Lock()
	if reusable && !uc.host.removed && !c.closed {
		uc.host.idle = append(uc.host.idle, uc)
		c.releasedLocked()
		c.mu.Unlock()
		return
	}
	c.cxActive--
	c.releasedLocked()
	c.mu.Unlock()
	uc.conn.Close()
	c.stats.CxActive.Add(-1)
}

// acquireConn counts a TCP proxy connection against the connection limit.
func (c *cluster) acquireConn() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cxActive >= c.cfg.Load().maxConnections {
		if victim := c.idleVictimLocked(); victim != nil {
			go func() { victim.conn.Close(); c.stats.CxActive.Add(-1) }()
			return true
		}
		return false
	}
	c.cxActive++
	return true
}

func (c *cluster) releaseConn() {
	c.mu.Lock()
	c.cxActive--
	c.releasedLocked()
	c.mu.Unlock()
}

// close closes every idle connection and makes the others close when
// released.
func (c *cluster) close() {
	c.mu.Lock()
	c.closed = true
	var closing []*upConn
	for _, h := range c.hosts {
		closing = append(closing, h.idle...)
		c.cxActive -= int64(len(h.idle))
		h.idle = nil
	}
	c.mu.Unlock()
	for _, uc := range closing {
		uc.conn.Close()
		c.stats.CxActive.Add(-1)
	}
}

// plainConn hides every method of a connection but Read, Write and Close
// (and the deadline and address methods), so that no copy takes the
// splice(2) or sendfile(2) paths of *net.TCPConn: bytes redirected by
// sk_msg are only seen by read(2).
type plainConn struct{ c net.Conn }

func plain(c net.Conn) net.Conn {
	if p, ok := c.(*plainConn); ok {
		return p
	}
	return &plainConn{c}
}

func (p *plainConn) Read(b []byte) (int, error)         { return p.c.Read(b) }
func (p *plainConn) Write(b []byte) (int, error)        { return p.c.Write(b) }
func (p *plainConn) Close() error                       { return p.c.Close() }
func (p *plainConn) LocalAddr() net.Addr                { return p.c.LocalAddr() }
func (p *plainConn) RemoteAddr() net.Addr               { return p.c.RemoteAddr() }
func (p *plainConn) SetDeadline(t time.Time) error      { return p.c.SetDeadline(t) }
func (p *plainConn) SetReadDeadline(t time.Time) error  { return p.c.SetReadDeadline(t) }
func (p *plainConn) SetWriteDeadline(t time.Time) error { return p.c.SetWriteDeadline(t) }

// CloseWrite half-closes a TCP connection.
func (p *plainConn) CloseWrite() error {
	if cw, ok := p.c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// dynamicHost returns the host of an original-destination cluster for
// addr, creating it on first use.
func (c *cluster) dynamicHost(addr netip.AddrPort) *host {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.hosts[addr]
	if !ok {
		h = c.newHost(addr)
		c.hosts[addr] = h
	}
	return h
}
