package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/meshbench/meshbench/datapaths/controlplane"
)

// BenchmarkBuiltinOutboundHTTP sends requests one after another through
// the builtin engine's outbound listener to one backend on loopback, over
// one keep-alive connection, with request bodies of 0, 64 B and 32 KiB:
// the proxy's own cost per request (with the client's and backend's), for
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
	for _, size := range []int{0, 64, 32 << 10} {
		b.Run(fmt.Sprintf("body=%d", size), func(b *testing.B) {
			body := bytes.Repeat([]byte("x"), size)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				req, err := http.NewRequest(http.MethodPost, "http://echo:8080/", bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
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
		})
	}
}
