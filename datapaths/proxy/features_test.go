package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/meshbench/meshbench/datapaths/controlplane"
)

func setupOne(t *testing.T, svcs ...controlplane.Service) (*testEnv, *Builtin) {
	t.Helper()
	env := newEnv(t)
	p := env.proxy(t, "sidecar~client")
	env.set(t, controlplane.Model{Services: svcs}, "sidecar~client")
	return env, p
}

func TestCircuitBreakers(t *testing.T) {
	t.Run("max requests", func(t *testing.T) {
		b := newBackend(t, "slow")
		b.block = make(chan struct{})
		env, p := setupOne(t, controlplane.Service{Name: "echo", Port: 8080, VIP: vip, Endpoints: endpoints(b),
			CircuitBreakers: controlplane.CircuitBreakers{MaxRequests: 1}})
		c := env.res.client(p.OutboundAddr(), vipDst(8080))
		done := make(chan int, 1)
		go func() { code, _ := get(t, c, "http://echo/"); done <- code }()
		waitFor(t, func() bool { return b.hits.Load() == 1 })
		if code, _ := get(t, c, "http://echo/"); code != http.StatusServiceUnavailable {
			t.Errorf("second concurrent request: %d, want 503", code)
		}
		close(b.block)
		if code := <-done; code != 200 {
			t.Errorf("first request: %d", code)
		}
		if n := adminStats(t, p).Clusters[controlplane.ClusterName("echo", 8080)]["overflow_rq"]; n != 1 {
			t.Errorf("overflow_rq = %d, want 1", n)
		}
	})
	t.Run("max connections and pending", func(t *testing.T) {
		b := newBackend(t, "slow")
		b.block = make(chan struct{})
		env, p := setupOne(t, controlplane.Service{Name: "echo", Port: 8080, VIP: vip, Endpoints: endpoints(b),
			CircuitBreakers: controlplane.CircuitBreakers{MaxConnections: 1, MaxPendingRequests: 1}})
		c := env.res.client(p.OutboundAddr(), vipDst(8080))
		var wg sync.WaitGroup
		codes := make(chan int, 2)
		for i := 0; i < 2; i++ {
			wg.Add(1)
			go func() { defer wg.Done(); code, _ := get(t, c, "http://echo/"); codes <- code }()
			if i == 0 {
				waitFor(t, func() bool { return b.hits.Load() == 1 })
			}
		}
		cl := controlplane.ClusterName("echo", 8080)
		waitFor(t, func() bool { return adminStats(t, p).Clusters[cl]["overflow_cx"] >= 1 })
		// One in flight, one pending: the third overflows the pending queue.
		if code, _ := get(t, c, "http://echo/"); code != http.StatusServiceUnavailable {
			t.Errorf("third request: %d, want 503", code)
		}
		close(b.block)
		wg.Wait()
		close(codes)
		for code := range codes {
			if code != 200 {
				t.Errorf("queued request: %d", code)
			}
		}
		st := adminStats(t, p).Clusters[cl]
		if st["overflow_pending"] != 1 || st["cx_total"] != 1 {
			t.Errorf("counters %v, want overflow_pending 1 and one connection", st)
		}
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) netip.AddrPort {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().(*net.TCPAddr).AddrPort()
	l.Close()
	return a
}

func TestRetries(t *testing.T) {
	cl := controlplane.ClusterName("echo", 8080)
	t.Run("on 5xx", func(t *testing.T) {
		b := newBackend(t, "flaky")
		b.fail.Store(2)
		env, p := setupOne(t, controlplane.Service{Name: "echo", Port: 8080, VIP: vip, Endpoints: endpoints(b),
			Retries: controlplane.RetryPolicy{Attempts: 2}})
		c := env.res.client(p.OutboundAddr(), vipDst(8080))
		if code, body := get(t, c, "http://echo/"); code != 200 || body != "flaky" {
			t.Fatalf("%d %q, want 200 after two retries", code, body)
		}
		if st := adminStats(t, p).Clusters[cl]; st["rq_retry"] != 2 || st["rq_5xx"] != 2 || st["rq_2xx"] != 1 {
			t.Errorf("counters %v", st)
		}
	})
	t.Run("on connect failure", func(t *testing.T) {
		b := newBackend(t, "good")
		dead := closedPort(t)
		eps := append(endpoints(b), controlplane.Endpoint{Pod: "dead", IP: dead.Addr(), Port: int(dead.Port()), Healthy: true})
		env, p := setupOne(t, controlplane.Service{Name: "echo", Port: 8080, VIP: vip, Endpoints: eps,
			Retries: controlplane.RetryPolicy{Attempts: 1, RetryOn: "connect-failure"}})
		c := env.res.client(p.OutboundAddr(), vipDst(8080))
		for i := 0; i < 6; i++ {
			if code, body := get(t, c, "http://echo/"); code != 200 || body != "good" {
				t.Fatalf("request %d: %d %q", i, code, body)
			}
		}
		st := adminStats(t, p).Clusters[cl]
		if st["cx_connect_fail"] < 1 || st["rq_retry"] != st["cx_connect_fail"] || st["rq_2xx"] != 6 {
			t.Errorf("counters %v, want a retry per connect failure and 6 successes", st)
		}
	})
	t.Run("per-try timeout", func(t *testing.T) {
		b := newBackend(t, "slow-once")
		b.delay.Store(int64(3 * time.Second))
		env, p := setupOne(t, controlplane.Service{Name: "echo", Port: 8080, VIP: vip, Endpoints: endpoints(b),
			Retries: controlplane.RetryPolicy{Attempts: 1, PerTryTimeout: 200 * time.Millisecond}})
		c := env.res.client(p.OutboundAddr(), vipDst(8080))
		if code, body := get(t, c, "http://echo/"); code != 200 || body != "slow-once" {
			t.Fatalf("%d %q, want 200 from the retry", code, body)
		}
		if st := adminStats(t, p).Clusters[cl]; st["rq_timeout"] != 1 || st["rq_retry"] != 1 {
			t.Errorf("counters %v", st)
		}
	})
	t.Run("no retry policy: 503 passes through", func(t *testing.T) {
		b := newBackend(t, "flaky")
		b.fail.Store(1)
		env, p := setupOne(t, controlplane.Service{Name: "echo", Port: 8080, VIP: vip, Endpoints: endpoints(b)})
		c := env.res.client(p.OutboundAddr(), vipDst(8080))
		if code, _ := get(t, c, "http://echo/"); code != 503 {
			t.Fatalf("%d, want 503", code)
		}
	})
}

func TestMaglevByHeader(t *testing.T) {
	bs := []*backend{newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")}
	env, p := setupOne(t, controlplane.Service{Name: "echo", Port: 8080, VIP: vip, Endpoints: endpoints(bs...),
		LBPolicy: controlplane.Maglev, HashHeader: "x-user"})
	c := env.res.client(p.OutboundAddr(), vipDst(8080))
	seen := map[string]bool{}
	for u := 0; u < 30; u++ {
		user := string(rune('A' + u))
		_, first := get(t, c, "http://echo/", "x-user", user)
		for i := 0; i < 3; i++ {
			if _, again := get(t, c, "http://echo/", "x-user", user); again != first {
				t.Fatalf("user %s went to %s then %s", user, first, again)
			}
		}
		seen[first] = true
	}
	if len(seen) < 2 {
		t.Errorf("30 users all hashed to %v", seen)
	}
}

// tcpEcho echoes every byte back.
func tcpEcho(t *testing.T) netip.AddrPort {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr).AddrPort()
}

func TestTCP(t *testing.T) {
	echo := tcpEcho(t)
	env, p := setupOne(t, controlplane.Service{Name: "db", Port: 5432, VIP: vip, Protocol: controlplane.TCP,
		Endpoints: []controlplane.Endpoint{{Pod: "db-0", IP: echo.Addr(), Port: int(echo.Port()), Healthy: true}}})
	other := tcpEcho(t) // known to no service: passthrough
	for _, tc := range []struct {
		name, cluster string
		dst           netip.AddrPort
	}{
		{"service via VIP", controlplane.ClusterName("db", 5432), vipDst(5432)},
		{"passthrough", controlplane.PassthroughCluster, other},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := env.res.dial(context.Background(), p.OutboundAddr(), tc.dst)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			payload := make([]byte, 1<<20)
			_, _ = rand.Read(payload)
			go func() {
				_, _ = conn.Write(payload)
				_ = conn.(*net.TCPConn).CloseWrite()
			}()
			_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
			got, err := io.ReadAll(conn)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, payload) {
				t.Fatalf("echoed %d bytes, not byte-exact with the %d sent", len(got), len(payload))
			}
			waitFor(t, func() bool { return adminStats(t, p).Clusters[tc.cluster]["cx_active"] == 0 })
			st := adminStats(t, p).Clusters[tc.cluster]
			if st["bytes_out"] != 1<<20 || st["bytes_in"] != 1<<20 || st["cx_total"] != 1 {
				t.Errorf("cluster counters %v", st)
			}
		})
	}
}

func TestInbound(t *testing.T) {
	b := newBackend(t, "local-app")
	env := newEnv(t)
	p := env.proxy(t, "sidecar~server")
	env.set(t, controlplane.Model{Services: []controlplane.Service{{Name: "echo", Port: 8080, VIP: vip,
		Endpoints: []controlplane.Endpoint{{Pod: "server", IP: netip.MustParseAddr("198.18.1.2"), Port: int(b.addr.Port()), Healthy: true}}}}},
		"sidecar~server")
	// Redirected inbound: the original destination is the pod's address on
	// the app's port; the proxy delivers it on 127.0.0.1.
	c := env.res.client(p.InboundAddr(), netip.AddrPortFrom(netip.MustParseAddr("198.18.1.2"), b.addr.Port()))
	for i := 0; i < 3; i++ {
		if code, body := get(t, c, "http://echo/"); code != 200 || body != "local-app" {
			t.Fatalf("%d %q", code, body)
		}
	}
	st := adminStats(t, p)
	if st.Listeners["inbound"]["rq_2xx"] != 3 || st.Clusters[controlplane.InboundClusterName(int(b.addr.Port()))]["rq_2xx"] != 3 {
		t.Errorf("inbound counters %v / %v", st.Listeners["inbound"], st.Clusters)
	}
}

func TestHTTPBodies(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/chunked" {
			w.(http.Flusher).Flush() // no Content-Length: a chunked response
		}
		_, _ = w.Write(b)
	})}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	a := l.Addr().(*net.TCPAddr).AddrPort()
	env, p := setupOne(t, controlplane.Service{Name: "echo", Port: 8080, VIP: vip,
		Endpoints: []controlplane.Endpoint{{Pod: "e", IP: a.Addr(), Port: int(a.Port()), Healthy: true}}})
	c := env.res.client(p.OutboundAddr(), vipDst(8080))
	payload := make([]byte, 1<<20)
	_, _ = rand.Read(payload)
	for _, tc := range []struct {
		name    string
		path    string
		chunked bool
	}{
		{"content-length both ways", "/plain", false},
		{"chunked request", "/plain", true},
		{"chunked response", "/chunked", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader = bytes.NewReader(payload)
			if tc.chunked {
				body = io.MultiReader(body) // unknown length: sent chunked
			}
			req, _ := http.NewRequest(http.MethodPost, "http://echo"+tc.path, body)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || !bytes.Equal(got, payload) {
				t.Fatalf("status %d, %d bytes back, byte-exact %v", resp.StatusCode, len(got), bytes.Equal(got, payload))
			}
		})
	}
}

func TestInboundPassthrough(t *testing.T) {
	echo := tcpEcho(t)
	env := newEnv(t)
	p := env.proxy(t, "sidecar~server")
	env.set(t, controlplane.Model{}, "sidecar~server")
	// A port no service names: delivered to 127.0.0.1 on the same port.
	conn, err := env.res.dial(context.Background(), p.InboundAddr(), netip.AddrPortFrom(netip.MustParseAddr("198.18.1.2"), echo.Port()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	msg := []byte("hello through the inbound passthrough")
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("read %q, %v", got, err)
	}
	if n := adminStats(t, p).Clusters[controlplane.InboundPassthroughCluster]["cx_total"]; n != 1 {
		t.Errorf("InboundPassthroughCluster cx_total = %d, want 1", n)
	}
}
