package harness_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/meshbench/meshbench/harness"
	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed/testutil"
)

// overheadScenario is the setting of the client-overhead target: 2 nodes ×
// 2 pods, one echo replica on the other node, 1000 req/s over 8
// connections, 64-byte bodies.
const overheadScenario = `
topology:
  nodes: 2
  pods_per_node: 2
  services: [{name: echo, replicas: 1}]
datapaths: [none, sidecar]
load: {rates: [1000], duration: 5s, warmup: 1s, connections: 8, calibrate: false%s}
repetitions: 3
`

// BenchmarkClientOverhead prints, for none and sidecar, the client's p50
// and p99 next to the kernel-side p50 and p99 of the same requests, and
// whether the client is within the target: p50 within 15% (or 20 µs) of
// the kernel-side p50, p99 within 25% of the kernel-side p99. It is a
// benchmark, not a test: it prints figures and never fails on them.
//
//	go test -run '^$' -bench ClientOverhead -benchtime 1x ./harness/
//
// MESHBENCH_PACER_SPIN=0s (a duration) overrides the scenario's pacer spin.
func BenchmarkClientOverhead(b *testing.B) {
	testutil.Privileged(b)
	extra := ""
	if v := os.Getenv("MESHBENCH_PACER_SPIN"); v != "" {
		extra = ", pacer_spin: " + v
	}
	for range b.N {
		opts := options(b, fmt.Sprintf(overheadScenario, extra))
		run, err := harness.Run(context.Background(), opts)
		if err != nil {
			b.Fatalf("run: %v", err)
		}
		for _, s := range run.Summaries {
			if len(s.KernelP50US.Values) == 0 {
				b.Logf("%s: no kernel-side latency", s.Datapath)
				continue
			}
			app50, app99 := s.P50US.Median, s.P99US.Median
			k50, k99 := s.KernelP50US.Median, s.KernelP99US.Median
			ok50 := app50 <= k50*1.15 || app50-k50 <= 20
			ok99 := app99 <= k99*1.25
			b.Logf("%-8s p50: client %6.0f µs, kernel-side %6.0f µs (+%.0f µs, %+.0f%%) within target: %v; p99: client %6.0f µs, kernel-side %6.0f µs (%+.0f%%) within target: %v; overhead per request p50 %s p99 %s; client CPU %s µs/req",
				s.Datapath, app50, k50, app50-k50, 100*(app50/k50-1), ok50, app99, k99, 100*(app99/k99-1), ok99,
				spread(s.OverheadP50US), spread(s.OverheadP99US), clientCPU(run, s.Datapath))
			b.ReportMetric(app50, s.Datapath+"_p50_us")
			b.ReportMetric(k50, s.Datapath+"_kernel_p50_us")
			b.ReportMetric(app99, s.Datapath+"_p99_us")
			b.ReportMetric(k99, s.Datapath+"_kernel_p99_us")
		}
	}
}

func spread(s results.Spread) string {
	return fmt.Sprintf("%.0f [%.0f–%.0f]", s.Median, s.Min, s.Max)
}

// clientCPU returns the client's CPU µs per request over the datapath's
// steps, as median [min–max].
func clientCPU(run *results.Run, dp string) string {
	var v []float64
	for _, s := range run.Steps {
		if s.Datapath == dp {
			v = append(v, s.Cost.ClientCPUMicrosPerReq)
		}
	}
	return spread(results.NewSpread(v))
}
