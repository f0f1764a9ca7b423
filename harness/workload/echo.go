package workload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshbench/meshbench/internal/ports"

	"github.com/meshbench/meshbench/datapaths"
)

// Echo server defaults.
const (
	DefaultEchoListen   = ":8080"
	DefaultResponseSize = 64
)

// DefaultAdminListen is where the echo server serves /stats and /healthz:
// the pod's loopback at ports.EchoAdmin.
var DefaultAdminListen = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports.EchoAdmin))

// PodHeader is the response header that names the pod that answered.
const PodHeader = "X-Meshbench-Pod"

// echoShutdownGrace bounds how long RunEcho waits for requests in flight
// when it is told to stop.
const echoShutdownGrace = 5 * time.Second

// EchoOptions configures RunEcho.
type EchoOptions struct {
	// Listen is the address of the echo service (default DefaultEchoListen).
	Listen string
	// AdminListen is the address of /stats and /healthz (default
	// DefaultAdminListen).
	AdminListen string
	// Listener and AdminListener, when set, are used instead of Listen and
	// AdminListen (for example listeners opened inside a netns). RunEcho
	// closes them.
	Listener      net.Listener
	AdminListener net.Listener
	// ResponseSize is the size of every response body in bytes.
	ResponseSize int
	// PodName, when set, is sent in the PodHeader response header.
	PodName string
	Logger  *slog.Logger
}

// echoServer answers every request with a fixed-size body and counts.
type echoServer struct {
	body        []byte
	contentLen  string
	pod         string
	requests    atomic.Int64
	bytesIn     atomic.Int64
	bytesOut    atomic.Int64
	connections atomic.Int64

	peersMu sync.Mutex
	peers   map[netip.Addr]*atomic.Int64 // requests by peer address
}

// peerKey is the context key of a connection's peer counter.
type peerKey struct{}

// peerCounter returns the request counter of c's peer address.
func (e *echoServer) peerCounter(c net.Conn) *atomic.Int64 {
	var ip netip.Addr
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		ip = ap.Addr().Unmap()
	}
	e.peersMu.Lock()
	defer e.peersMu.Unlock()
	n, ok := e.peers[ip]
	if !ok {
		n = new(atomic.Int64)
		e.peers[ip] = n
	}
	return n
}

// ServeHTTP reads and discards the request body and writes the response.
func (e *echoServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n, _ := io.Copy(io.Discard, r.Body)
	e.bytesIn.Add(n)
	h := w.Header()
	h.Set("Content-Length", e.contentLen)
	h.Set("Content-Type", "application/octet-stream")
	if e.pod != "" {
		h.Set(PodHeader, e.pod)
	}
	w.WriteHeader(http.StatusOK)
	m, _ := w.Write(e.body)
	e.bytesOut.Add(int64(m))
	e.requests.Add(1)
	if n, ok := r.Context().Value(peerKey{}).(*atomic.Int64); ok {
		n.Add(1)
	}
}

// stats returns the counters.
func (e *echoServer) stats() datapaths.EchoStats {
	st := datapaths.EchoStats{
		Requests:    e.requests.Load(),
		BytesIn:     e.bytesIn.Load(),
		BytesOut:    e.bytesOut.Load(),
		Connections: e.connections.Load(),
		ByPeer:      map[string]int64{},
	}
	e.peersMu.Lock()
	defer e.peersMu.Unlock()
	for ip, n := range e.peers {
		st.ByPeer[ip.String()] = n.Load()
	}
	return st
}

// adminHandler serves GET /stats (the counters as JSON) and GET /healthz.
func (e *echoServer) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(e.stats())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	return mux
}

// RunEcho runs an HTTP/1.1 echo server until ctx ends, then shuts it down
// gracefully and returns nil. Every request's body is read and discarded and
// answered with 200 and ResponseSize bytes. Counters (requests, body bytes
// in and out, connections accepted) are served as JSON at GET /stats on the
// admin address, with GET /healthz. It returns an error when a listener
// cannot be opened or a server fails.
func RunEcho(ctx context.Context, o EchoOptions) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.ResponseSize < 0 {
		return fmt.Errorf("echo: negative response size %d", o.ResponseSize)
	}
	ln, adminLn := o.Listener, o.AdminListener
	closeAll := func() {
		for _, l := range []net.Listener{ln, adminLn} {
			if l != nil {
				l.Close()
			}
		}
	}
	var err error
	if ln == nil {
		addr := o.Listen
		if addr == "" {
			addr = DefaultEchoListen
		}
		if ln, err = net.Listen("tcp", addr); err != nil {
			closeAll()
			return fmt.Errorf("echo: listen %s: %w", addr, err)
		}
	}
	if adminLn == nil {
		addr := o.AdminListen
		if addr == "" {
			addr = DefaultAdminListen
		}
		if adminLn, err = net.Listen("tcp", addr); err != nil {
			closeAll()
			return fmt.Errorf("echo: listen admin %s: %w", addr, err)
		}
	}

	e := &echoServer{
		body:       make([]byte, o.ResponseSize),
		contentLen: strconv.Itoa(o.ResponseSize),
		pod:        o.PodName,
		peers:      map[netip.Addr]*atomic.Int64{},
	}
	for i := range e.body {
		e.body[i] = 'a' + byte(i%26)
	}
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	srv := &http.Server{
		Handler:           e,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       10 * time.Minute,
		ErrorLog:          errLog,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, peerKey{}, e.peerCounter(c))
		},
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				e.connections.Add(1)
			}
		},
	}
	admin := &http.Server{Handler: e.adminHandler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog}

	log.Info("echo server listening", "addr", ln.Addr().String(), "admin", adminLn.Addr().String(),
		"response_size", o.ResponseSize, "pod", o.PodName)
	errc := make(chan error, 2)
	go func() { errc <- serve(srv, ln, "echo") }()
	go func() { errc <- serve(admin, adminLn, "echo admin") }()

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), echoShutdownGrace)
	defer cancel()
	var errs []error
	for _, s := range []*http.Server{srv, admin} {
		if err := s.Shutdown(sctx); err != nil {
			s.Close()
			errs = append(errs, fmt.Errorf("echo: shut down: %w", err))
		}
	}
	st := e.stats()
	log.Info("echo server stopped", "requests", st.Requests, "connections", st.Connections)
	return errors.Join(append([]error{serveErr}, errs...)...)
}

// serve runs s on ln and returns nil when s was shut down.
func serve(s *http.Server, ln net.Listener, what string) error {
	if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s: serve %s: %w", what, ln.Addr(), err)
	}
	return nil
}
