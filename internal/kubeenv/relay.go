package kubeenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"time"
)

// relay accepts connections on a listener and joins each to a connection
// it dials. It carries the nodes' traffic to the API server (a listener on
// 127.0.0.1 inside the node's namespace, dialing the API server on the
// host's loopback) and the API server's traffic to kubelets and pods (an
// HTTP CONNECT proxy on a unix socket, dialing from the fabric namespace).
type relay struct {
	l       net.Listener
	handle  func(net.Conn)
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
	closing bool
}

func newRelay(l net.Listener, handle func(*relay, net.Conn)) *relay {
	r := &relay{l: l, conns: map[net.Conn]struct{}{}}
	r.handle = func(c net.Conn) { handle(r, c) }
	r.wg.Add(1)
	go r.serve()
	return r
}

// newTCPRelay forwards every connection accepted on l to addr, dialed from
// the calling process's (root) namespace.
func newTCPRelay(l net.Listener, addr string) *relay {
	return newRelay(l, func(r *relay, c net.Conn) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var d net.Dialer
		up, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			c.Close()
			return
		}
		r.pipe(c, up)
	})
}

// newConnectRelay serves HTTP CONNECT on a unix socket at path; each
// tunnel's target must be inside 198.18.0.0/15 and is dialed with dial.
func newConnectRelay(path string, dial func(ctx context.Context, addr string) (net.Conn, error)) (*relay, error) {
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("egress proxy: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("egress proxy: %w", err)
	}
	return newRelay(l, func(r *relay, c net.Conn) {
		br := bufio.NewReader(c)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		req, err := http.ReadRequest(br)
		if err != nil {
			c.Close()
			return
		}
		c.SetReadDeadline(time.Time{})
		refuse := func(code int, msg string) {
			fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Length: %d\r\n\r\n%s", code, http.StatusText(code), len(msg), msg)
			c.Close()
		}
		if req.Method != http.MethodConnect {
			refuse(http.StatusMethodNotAllowed, "CONNECT only")
			return
		}
		ap, err := netip.ParseAddrPort(req.Host)
		if err != nil || !benchRange.Contains(ap.Addr()) {
			refuse(http.StatusForbidden, fmt.Sprintf("target %q: not in %s", req.Host, benchRange))
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		up, err := dial(ctx, ap.String())
		cancel()
		if err != nil {
			refuse(http.StatusBadGateway, err.Error())
			return
		}
		if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
			c.Close()
			up.Close()
			return
		}
		// Bytes the client sent after its request are in br.
		r.pipe(&bufferedConn{Conn: c, r: br}, up)
	}), nil
}

// benchRange is the only range the environment ever connects to.
var benchRange = netip.MustParsePrefix("198.18.0.0/15")

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

func (r *relay) serve() {
	defer r.wg.Done()
	for {
		c, err := r.l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if !r.track(c) {
			c.Close()
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.handle(c)
		}()
	}
}

func (r *relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

// pipe copies both ways until either side ends, then closes both.
func (r *relay) pipe(a, b net.Conn) {
	if !r.track(b) {
		a.Close()
		b.Close()
		return
	}
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		io.Copy(dst, src)
		if tc, ok := dst.(interface{ CloseWrite() error }); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	// Give the other direction a moment to drain its half-close.
	select {
	case <-done:
	case <-time.After(30 * time.Second):
	}
	a.Close()
	b.Close()
	r.mu.Lock()
	delete(r.conns, a)
	delete(r.conns, b)
	if bc, ok := a.(*bufferedConn); ok {
		delete(r.conns, bc.Conn)
	}
	r.mu.Unlock()
}

// close stops accepting, closes every connection and waits for the
// handlers.
func (r *relay) close() {
	r.mu.Lock()
	r.closing = true
	r.l.Close()
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}
