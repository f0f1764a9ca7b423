package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshbench/meshbench/datapaths/controlplane"
)

func TestEndToEndTwoProxies(t *testing.T) {
	env := newEnv(t)
	b1, b2, b3 := newBackend(t, "pod-1"), newBackend(t, "pod-2"), newBackend(t, "pod-3")
	m := controlplane.Model{
		Proxies: []string{"sidecar~client-a", "sidecar~client-b"},
		Services: []controlplane.Service{{
			Name: "echo", Port: 8080, VIP: vip, Protocol: controlplane.HTTP,
			LBPolicy: controlplane.RoundRobin, Endpoints: endpoints(b1, b2, b3),
		}},
	}
	env.set(t, m) // before the proxies connect
	pa, pb := env.proxy(t, "sidecar~client-a"), env.proxy(t, "sidecar~client-b")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, p := range []*Builtin{pa, pb} {
		if err := p.Ready(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := env.cp.WaitAcked(ctx, env.cp.Version(), []string{"sidecar~client-a", "sidecar~client-b"}); err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"echo", "echo:8080", "198.19.128.1:8080"} {
		t.Run("host="+host, func(t *testing.T) {
			c := env.res.client(pa.OutboundAddr(), vipDst(8080))
			seen := map[string]int{}
			for i := 0; i < 9; i++ {
				code, body := get(t, c, "http://"+host+"/x")
				if code != 200 {
					t.Fatalf("status %d body %q", code, body)
				}
				seen[body]++
			}
			if len(seen) != 3 {
				t.Errorf("round robin reached %v, want all 3 backends", seen)
			}
		})
	}
	t.Run("unknown host is 404", func(t *testing.T) {
		c := env.res.client(pb.OutboundAddr(), vipDst(8080))
		if code, _ := get(t, c, "http://nope/"); code != http.StatusNotFound {
			t.Errorf("status %d, want 404", code)
		}
	})

	// Kill pod-2: the new version reaches both proxies and no request goes
	// to it any more.
	m.Services[0].Endpoints = endpoints(b1, b3)
	lat, v, err := env.cp.PushLatency(ctx, m, []string{"sidecar~client-a", "sidecar~client-b"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("push latency after endpoint removal: %v (version %s)", lat, v)
	before := b2.hits.Load()
	c := env.res.client(pb.OutboundAddr(), vipDst(8080))
	for i := 0; i < 10; i++ {
		if code, body := get(t, c, "http://echo/"); code != 200 || body == "pod-2" {
			t.Fatalf("status %d body %q after removing pod-2", code, body)
		}
	}
	if b2.hits.Load() != before {
		t.Errorf("removed endpoint got %d requests", b2.hits.Load()-before)
	}

	st := adminStats(t, pa)
	if st.Listeners["outbound"]["rq_total"] < 27 || st.Listeners["outbound"]["rq_2xx"] < 27 {
		t.Errorf("outbound listener counters %v, want >= 27 requests", st.Listeners["outbound"])
	}
	cl := st.Clusters[controlplane.ClusterName("echo", 8080)]
	if cl["rq_2xx"] < 27 || cl["cx_total"] < 1 {
		t.Errorf("cluster counters %v", cl)
	}
	if st.Version["clusters"] != v {
		t.Errorf("stats version %v, want %s", st.Version, v)
	}
	resp, err := http.Get("http://" + pa.AdminAddr().String() + "/ready")
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("/ready: %v %v", resp, err)
	}
	resp, err = http.Get("http://" + pa.AdminAddr().String() + "/stats?format=text")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(text), "listener.outbound.rq_total: ") {
		t.Errorf("text stats lack listener.outbound.rq_total:\n%s", text)
	}
}

func TestNACK(t *testing.T) {
	env := newEnv(t)
	b1 := newBackend(t, "pod-1")
	m := controlplane.Model{Services: []controlplane.Service{{Name: "echo", Port: 8080, VIP: vip, Endpoints: endpoints(b1)}}}
	env.set(t, m)
	p := env.proxy(t, "sidecar~x")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	m.Services[0].LBPolicy = controlplane.RingHash
	v, err := env.cp.SetModel(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	err = env.cp.WaitAcked(ctx, v, []string{"sidecar~x"})
	if !errors.Is(err, controlplane.ErrNACK) || !strings.Contains(err.Error(), "RING_HASH") {
		t.Fatalf("WaitAcked = %v, want a NACK naming RING_HASH", err)
	}
	t.Logf("NACK: %v", err)
	// The proxy kept its previous configuration.
	c := env.res.client(p.OutboundAddr(), vipDst(8080))
	if code, body := get(t, c, "http://echo/"); code != 200 || body != "pod-1" {
		t.Errorf("after NACK: %d %q", code, body)
	}
}

func TestControlPlaneUnreachable(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "absent.sock")
	err := Run(context.Background(), Options{
		XDSSocket: sock, NodeID: "sidecar~x", AdminAddr: "127.0.0.1:0", ListenIP: "127.0.0.1",
		OutboundPort: FreePort, InboundPort: FreePort, ConnectTimeout: 300 * time.Millisecond,
	})
	if !errors.Is(err, ErrControlPlaneUnreachable) || !strings.Contains(err.Error(), "cannot reach control plane at "+sock) {
		t.Fatalf("Run = %v, want ErrControlPlaneUnreachable naming the socket", err)
	}
}
