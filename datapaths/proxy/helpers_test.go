package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshbench/meshbench/datapaths/controlplane"
)

// resolver stands in for SO_ORIGINAL_DST on loopback: the test records the
// destination of each connection it opens to the proxy.
type resolver struct{ m sync.Map }

func (r *resolver) lookup(c net.Conn) (netip.AddrPort, error) {
	key := c.RemoteAddr().String()
	for i := 0; i < 200; i++ {
		if v, ok := r.m.Load(key); ok {
			return v.(netip.AddrPort), nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return netip.AddrPort{}, fmt.Errorf("no destination recorded for %s", key)
}

func (r *resolver) dial(ctx context.Context, proxyAddr net.Addr, dst netip.AddrPort) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", proxyAddr.String())
	if err != nil {
		return nil, err
	}
	r.m.Store(c.LocalAddr().String(), dst)
	return c, nil
}

// client returns an HTTP client whose every connection goes to proxyAddr
// with original destination dst.
func (r *resolver) client(proxyAddr net.Addr, dst netip.AddrPort) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return r.dial(ctx, proxyAddr, dst)
			},
			MaxIdleConnsPerHost: 64,
		},
	}
}

type testEnv struct {
	cp  *controlplane.Server
	res *resolver
}

func newEnv(t testing.TB) *testEnv {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cp := controlplane.New(controlplane.Options{SocketPath: filepath.Join(t.TempDir(), "xds.sock")})
	if err := cp.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cp.Stop() })
	return &testEnv{cp: cp, res: &resolver{}}
}

func (e *testEnv) proxy(t testing.TB, node string) *Builtin {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := NewBuiltin(Options{
		XDSSocket: e.cp.SocketPath(), NodeID: node, AdminAddr: "127.0.0.1:0", ListenIP: "127.0.0.1",
		OutboundPort: FreePort, InboundPort: FreePort, OriginalDst: e.res.lookup,
		ConnectTimeout: 10 * time.Second,
	})
	if err := p.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = p.Stop(context.Background()) })
	return p
}

func (e *testEnv) set(t testing.TB, m controlplane.Model, nodes ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	v, err := e.cp.SetModel(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.cp.WaitAcked(ctx, v, nodes); err != nil {
		t.Fatal(err)
	}
	return v
}

// backend is an HTTP server on loopback that names itself in responses.
type backend struct {
	name  string
	addr  netip.AddrPort
	srv   *http.Server
	hits  atomic.Int64
	fail  atomic.Int64 // respond 503 to this many requests first
	delay atomic.Int64 // nanoseconds to wait before responding (once per request)
	block chan struct{}
}

func newBackend(t testing.TB, name string) *backend {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, addr: l.Addr().(*net.TCPAddr).AddrPort()}
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		if b.block != nil {
			select {
			case <-b.block:
			case <-r.Context().Done():
			}
		}
		if d := b.delay.Swap(0); d > 0 {
			time.Sleep(time.Duration(d))
		}
		if b.fail.Add(-1) >= 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("X-Backend", b.name)
		_, _ = io.WriteString(w, b.name)
	})}
	go func() { _ = b.srv.Serve(l) }()
	t.Cleanup(func() { _ = b.srv.Close() })
	return b
}

func get(t *testing.T, c *http.Client, url string, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

var vip = netip.MustParseAddr("198.19.128.1")

func vipDst(port int) netip.AddrPort { return netip.AddrPortFrom(vip, uint16(port)) }

func endpoints(bs ...*backend) []controlplane.Endpoint {
	var out []controlplane.Endpoint
	for _, b := range bs {
		out = append(out, controlplane.Endpoint{Pod: b.name, IP: b.addr.Addr(), Port: int(b.addr.Port()), Healthy: true})
	}
	return out
}

func adminStats(t *testing.T, p *Builtin) Stats {
	t.Helper()
	resp, err := http.Get("http://" + p.AdminAddr().String() + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	s, err := ParseStats(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
