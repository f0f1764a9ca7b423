package proxy

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/meshbench/meshbench/datapaths/controlplane"
)

// BenchmarkBuiltinOutboundHTTP sends requests one after another through
// the builtin engine's outbound listener to one backend on loopback, over
// one keep-alive connection: the proxy's own cost per request, for
// profiling (go test -run x -bench BuiltinOutbound -cpuprofile cpu.out
// -benchmem ./datapaths/proxy/). Not a test: no figure is asserted.
func BenchmarkBuiltinOutboundHTTP(b *testing.B) {
	env := newEnv(b)
	be := newBackend(b, "pod-1")
	m := controlplane.Model{
		Proxies: []string{"sidecar~client"},
		Services: []controlplane.Service{{
			Name: "echo", Port: 8080, VIP: vip, Protocol: controlplane.HTTP,
			LBPolicy: controlplane.RoundRobin, Endpoints: endpoints(be),
		}},
	}
	env.set(b, m)
	p := env.proxy(b, "sidecar~client")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Ready(ctx); err != nil {
		b.Fatal(err)
	}
	c := env.res.client(p.OutboundAddr(), vipDst(8080))
	req, err := http.NewRequest(http.MethodGet, "http://echo:8080/", nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}
