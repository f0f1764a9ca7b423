package controlplane_test

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/meshbench/meshbench/datapaths/controlplane"
	"github.com/meshbench/meshbench/datapaths/proxy"
)

// modelWith has one HTTP service with n endpoints in 198.18.0.0/15 (never
// dialed).
func modelWith(n int) controlplane.Model {
	svc := controlplane.Service{Name: "echo", Port: 8080, VIP: netip.MustParseAddr("198.19.128.1")}
	for i := 0; i < n; i++ {
		svc.Endpoints = append(svc.Endpoints, controlplane.Endpoint{
			Pod: fmt.Sprintf("pod-%d", i), IP: netip.AddrFrom4([4]byte{198, 18, byte(i / 250), byte(i%250 + 1)}), Port: 8080, Healthy: true,
		})
	}
	return controlplane.Model{Services: []controlplane.Service{svc}}
}

// TestPushLatency measures config-push latency (SetModel until both
// proxies ACKed every type) when an endpoint is killed, at 10, 100 and
// 1000 endpoints.
func TestPushLatency(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cp := controlplane.New(controlplane.Options{SocketPath: filepath.Join(t.TempDir(), "xds.sock")})
	if err := cp.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer cp.Stop()
	nodes := []string{"sidecar~a", "sidecar~b"}
	for _, n := range nodes {
		p := proxy.NewBuiltin(proxy.Options{XDSSocket: cp.SocketPath(), NodeID: n, AdminAddr: "127.0.0.1:0",
			ListenIP: "127.0.0.1", OutboundPort: proxy.FreePort, InboundPort: proxy.FreePort})
		if err := p.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer p.Stop(context.Background())
	}
	for _, n := range []int{10, 100, 1000} {
		t.Run(fmt.Sprintf("endpoints=%d", n), func(t *testing.T) {
			m := modelWith(n)
			if _, _, err := cp.PushLatency(ctx, m, nodes); err != nil {
				t.Fatal(err)
			}
			for _, how := range []string{"removed", "marked unhealthy"} {
				var lats []time.Duration
				for round := 0; round < 5; round++ {
					// Kill one endpoint, then bring it back (a restart).
					killed := m
					killed.Services = slices.Clone(m.Services)
					if how == "removed" {
						killed.Services[0].Endpoints = slices.Delete(slices.Clone(m.Services[0].Endpoints), round, round+1)
					} else {
						killed = m.WithPodHealth(m.Services[0].Endpoints[round].Pod, false)
					}
					for _, mm := range []controlplane.Model{killed, m} {
						lat, _, err := cp.PushLatency(ctx, mm, nodes)
						if err != nil {
							t.Fatal(err)
						}
						lats = append(lats, lat)
					}
				}
				slices.Sort(lats)
				t.Logf("push latency, %d endpoints, 2 proxies, endpoint %s and restored, %d pushes: min %v median %v max %v",
					n, how, len(lats), lats[0], lats[len(lats)/2], lats[len(lats)-1])
			}
		})
	}
}
