package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshbench/meshbench/internal/ports"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"
)

// DefaultAdminAddr is the admin endpoint's address: the pod's (or node's)
// loopback at ports.ProxyAdmin.
var DefaultAdminAddr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), ports.ProxyAdmin).String()

// Defaults of Options.
const (
	DefaultOutboundPort   = ports.ProxyOutbound
	DefaultInboundPort    = ports.ProxyInbound
	DefaultConnectTimeout = 10 * time.Second
)

// Special listener ports of Options.
const (
	Disabled = -1
	FreePort = -2
)

// ErrControlPlaneUnreachable is returned (wrapped, with the socket and the
// last error) when the proxy got no configuration within
// Options.ConnectTimeout.
var ErrControlPlaneUnreachable = errors.New("cannot reach control plane")

// Options configure the builtin proxy.
type Options struct {
	// XDSSocket is the control plane's unix socket.
	XDSSocket string
	// NodeID identifies the proxy to the control plane ("sidecar~<pod>").
	NodeID string
	// Cluster is the node's cluster (Envoy's --service-cluster); default
	// "meshbench".
	Cluster string
	// AdminAddr serves /stats, /ready, /config_dump and /memory; default
	// 127.0.0.1:15000.
	AdminAddr string
	// ListenIP is the address the outbound and inbound listeners bind;
	// default 0.0.0.0.
	ListenIP string
	// OutboundPort and InboundPort: 0 means the defaults 15001 and 15006;
	// Disabled turns a listener off and FreePort binds any free port.
	OutboundPort int
	InboundPort  int
	// ConnectTimeout bounds the wait for the first configuration; default
	// 10s.
	ConnectTimeout time.Duration
	// OriginalDst recovers a connection's original destination; default
	// SO_ORIGINAL_DST. Datapaths that learn it another way (and tests)
	// replace it.
	OriginalDst func(net.Conn) (netip.AddrPort, error)
	// Listen opens the outbound and inbound listeners; default
	// net.Listen. A caller can create them in another network namespace.
	Listen func(network, address string) (net.Listener, error)
	// InboundOriginalIP makes the inbound listener's original-destination
	// cluster dial the original address; by default it dials
	// 127.0.0.1:<original port>, as Istio did before 1.10.
	InboundOriginalIP bool
	Logger            *slog.Logger
}

func (o *Options) defaults() {
	if o.AdminAddr == "" {
		o.AdminAddr = DefaultAdminAddr
	}
	if o.ListenIP == "" {
		o.ListenIP = "0.0.0.0"
	}
	if o.OutboundPort == 0 {
		o.OutboundPort = DefaultOutboundPort
	}
	if o.InboundPort == 0 {
		o.InboundPort = DefaultInboundPort
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.OriginalDst == nil {
		o.OriginalDst = OriginalDst
	}
	if o.Listen == nil {
		o.Listen = net.Listen
	}
	if o.Cluster == "" {
		o.Cluster = "meshbench"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// state is one applied configuration.
type state struct {
	version   map[string]string
	listeners map[string]*listenerCfg
	routes    map[string]*routeCfg
	raw       map[string]map[string]proto.Message
}

// Builtin is the builtin proxy engine.
type Builtin struct {
	opts Options
	log  *slog.Logger
	reg  *registry

	state atomic.Pointer[state]

	cmu      sync.Mutex
	clusters map[string]*cluster

	ready     chan struct{}
	readyOnce sync.Once
	failed    chan struct{}
	failErr   error

	outbound, inbound, admin net.Listener
	adminSrv                 *http.Server

	cancel context.CancelFunc
	wg     sync.WaitGroup
	conns  sync.Map // net.Conn → struct{}, downstream connections to close on stop
	done   chan struct{}
	err    error
}

var _ Engine = (*Builtin)(nil)

// NewBuiltin returns a builtin proxy; Start starts it.
func NewBuiltin(opts Options) *Builtin {
	opts.defaults()
	return &Builtin{
		opts: opts, log: opts.Logger, reg: newRegistry(),
		clusters: map[string]*cluster{},
		ready:    make(chan struct{}), failed: make(chan struct{}), done: make(chan struct{}),
	}
}

// Name is "builtin".
func (p *Builtin) Name() string { return "builtin" }

// OutboundAddr is the outbound listener's address (nil when disabled).
func (p *Builtin) OutboundAddr() net.Addr { return addrOf(p.outbound) }

// InboundAddr is the inbound listener's address (nil when disabled).
func (p *Builtin) InboundAddr() net.Addr { return addrOf(p.inbound) }

// AdminAddr is the admin listener's address.
func (p *Builtin) AdminAddr() net.Addr { return addrOf(p.admin) }

func addrOf(l net.Listener) net.Addr {
	if l == nil {
		return nil
	}
	return l.Addr()
}

// Start binds the admin, outbound and inbound listeners and starts the xDS
// client. Connections accepted before the first configuration wait for it.
func (p *Builtin) Start(ctx context.Context) error {
	if p.opts.XDSSocket == "" || p.opts.NodeID == "" {
		return errors.New("start proxy: xds socket and node id are required")
	}
	ctx, cancel := context.WithCancel(ctx)
	p.cancel = cancel
	var err error
	closeAll := func() {
		cancel()
		for _, l := range []net.Listener{p.admin, p.outbound, p.inbound} {
			if l != nil {
				l.Close()
			}
		}
	}
	if p.admin, err = net.Listen("tcp", p.opts.AdminAddr); err != nil {
		closeAll()
		p.cancel = nil
		return fmt.Errorf("start proxy: admin: %w", err)
	}
	listen := func(port int) (net.Listener, error) {
		switch port {
		case Disabled:
			return nil, nil
		case FreePort:
			port = 0
		}
		return p.opts.Listen("tcp4", net.JoinHostPort(p.opts.ListenIP, fmt.Sprint(port)))
	}
	if p.outbound, err = listen(p.opts.OutboundPort); err != nil {
		closeAll()
		p.cancel = nil
		return fmt.Errorf("start proxy: outbound listener: %w", err)
	}
	if p.inbound, err = listen(p.opts.InboundPort); err != nil {
		closeAll()
		p.cancel = nil
		return fmt.Errorf("start proxy: inbound listener: %w", err)
	}
	p.adminSrv = &http.Server{Handler: p.adminHandler(), ReadHeaderTimeout: 5 * time.Second}
	p.wg.Add(1)
	go func() { defer p.wg.Done(); _ = p.adminSrv.Serve(p.admin) }()
	if p.outbound != nil {
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.serve(ctx, p.outbound, corev3.TrafficDirection_OUTBOUND) }()
	}
	if p.inbound != nil {
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.serve(ctx, p.inbound, corev3.TrafficDirection_INBOUND) }()
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		runXDS(ctx, xdsConfig{
			socket: p.opts.XDSSocket, nodeID: p.opts.NodeID, cluster: p.opts.Cluster,
			connectTimeout: p.opts.ConnectTimeout, log: p.log, sink: p,
			ready: func() { p.readyOnce.Do(func() { close(p.ready) }) }, isReady: p.IsReady, fail: p.fail,
		})
	}()
	go func() {
		<-ctx.Done()
		closeAll()
		_ = p.adminSrv.Close()
		p.conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		p.wg.Wait()
		p.cmu.Lock()
		for _, c := range p.clusters {
			c.close()
		}
		p.cmu.Unlock()
		close(p.done)
	}()
	p.log.Info("proxy started", "node", p.opts.NodeID, "xds", p.opts.XDSSocket, "admin", p.admin.Addr().String())
	return nil
}

// Ready returns nil once the first full configuration has been applied and
// ACKed, an error wrapping ErrControlPlaneUnreachable when none came within
// Options.ConnectTimeout, or ctx's error.
func (p *Builtin) Ready(ctx context.Context) error {
	select {
	case <-p.ready:
		return nil
	case <-p.failed:
		return p.failErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// IsReady says whether the first full configuration has been applied.
func (p *Builtin) IsReady() bool {
	select {
	case <-p.ready:
		return true
	default:
		return false
	}
}

// Counters returns the flattened counters (see Stats.Flatten).
func (p *Builtin) Counters(context.Context) (map[string]int64, error) {
	return p.Stats().Flatten(), nil
}

// Stats returns the proxy's counters.
func (p *Builtin) Stats() Stats {
	var version map[string]string
	if st := p.state.Load(); st != nil {
		version = st.version
	}
	return p.reg.snapshot(version)
}

// Stop stops the proxy: listeners, connections and the xDS stream.
func (p *Builtin) Stop(context.Context) error {
	if p.cancel != nil {
		p.cancel()
		<-p.done
	}
	return nil
}

// Wait blocks until the proxy has stopped.
func (p *Builtin) Wait() error {
	<-p.done
	return p.err
}

// Run runs the builtin engine until ctx ends (see RunEngine).
func Run(ctx context.Context, opts Options) error { return RunEngine(ctx, NewBuiltin(opts)) }

// RunEngine starts e, waits until it has its first configuration and runs
// it until ctx ends, then stops it. It returns nil when ctx ended, and the
// engine's error when it could not start or get its configuration.
func RunEngine(ctx context.Context, e Engine) error {
	if err := e.Start(ctx); err != nil {
		return err
	}
	defer e.Stop(context.Background())
	if err := e.Ready(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	<-ctx.Done()
	return nil
}

func (p *Builtin) fail(err error) {
	p.failErr = err
	close(p.failed)
}

func (p *Builtin) serve(ctx context.Context, l net.Listener, dir corev3.TrafficDirection) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			p.log.Warn("accept", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		wg.Add(1)
		p.conns.Store(c, struct{}{})
		go func() {
			defer wg.Done()
			defer p.conns.Delete(c)
			defer c.Close()
			p.handle(ctx, c, dir)
		}()
	}
}

// listenerFor returns the configured listener of a direction.
func (st *state) listenerFor(dir corev3.TrafficDirection, port int) *listenerCfg {
	for _, l := range st.listeners {
		if l.direction == dir {
			return l
		}
	}
	for _, l := range st.listeners {
		if l.port == port {
			return l
		}
	}
	return nil
}

func (p *Builtin) handle(ctx context.Context, c net.Conn, dir corev3.TrafficDirection) {
	if !p.IsReady() {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := p.Ready(wctx)
		cancel()
		if err != nil {
			return
		}
	}
	port := c.LocalAddr().(*net.TCPAddr).Port
	st := p.state.Load()
	lc := st.listenerFor(dir, port)
	if lc == nil {
		p.log.Debug("no listener configured", "direction", dir)
		return
	}
	ls := p.reg.listener(lc.name)
	ls.CxTotal.Add(1)
	ls.CxActive.Add(1)
	defer ls.CxActive.Add(-1)
	dst, err := p.opts.OriginalDst(c)
	if err != nil {
		p.log.Debug("original destination", "err", err)
		ls.NoRoute.Add(1)
		return
	}
	if la, ok := c.LocalAddr().(*net.TCPAddr); ok && la.Port == int(dst.Port()) && (dst.Addr().IsLoopback() || dst.Addr().IsUnspecified() || la.IP.Equal(net.IP(dst.Addr().AsSlice()))) {
		// A connection to the listener itself would loop.
		ls.NoRoute.Add(1)
		return
	}
	chain := lc.match(dst)
	if chain == nil {
		ls.NoRoute.Add(1)
		return
	}
	dc := plain(c)
	switch {
	case chain.tcp != nil:
		p.proxyTCP(ctx, dc, dst, dir, ls, chain.tcp)
	case chain.http != nil:
		p.proxyHTTP(ctx, dc, dst, dir, ls, chain.http)
	}
}

func (p *Builtin) cluster(name string) *cluster {
	p.cmu.Lock()
	defer p.cmu.Unlock()
	return p.clusters[name]
}
