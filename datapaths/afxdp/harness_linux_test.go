package afxdp_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/datapaths/afxdp"
	"github.com/meshbench/meshbench/datapaths/none"
	"github.com/meshbench/meshbench/harness"
	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed/netns"
	"github.com/meshbench/meshbench/harness/testbed/testutil"
	"github.com/meshbench/meshbench/scenarios"
)

const compareScenario = `
datapaths: [none, afxdp]
topology:
  nodes: 2
  pods_per_node: 2
  services:
    - name: echo
      replicas: 2
load:
  rates: [500]
  duration: 3s
  warmup: 1s
  connections: 4
`

// TestHarnessAgainstNone runs the harness over none and afxdp in one run:
// HTTP through the service VIP and the forwarders, proved by their
// counters, with the latency of both logged side by side.
func TestHarnessAgainstNone(t *testing.T) {
	requireAFXDP(t)
	sc, err := scenarios.Parse("compare.yaml", []byte(compareScenario))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	opts := harness.Options{
		Scenario:       sc,
		ScenarioPath:   "compare.yaml",
		ScenarioSource: []byte(compareScenario),
		OutDir:         t.TempDir(),
		Provider:       netns.New(netns.Options{}),
		NewDatapath: func(name string) (datapaths.Datapath, error) {
			switch name {
			case none.Name:
				return none.New(), nil
			case afxdp.Name:
				return afxdp.New(), nil
			}
			return nil, fmt.Errorf("datapath %s not in this test", name)
		},
		Exec:  exe(t),
		RunID: testutil.NewRunID(t),
	}
	run, err := harness.Run(ctx, opts)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if run.Status != results.StatusOK {
		t.Fatalf("status %q: %s", run.Status, run.Error)
	}
	got := map[string]results.Step{}
	for _, s := range run.Steps {
		got[s.Datapath] = s
		l := s.LatencyUS
		t.Logf("%-6s %v req/s: %d requests, success %.3f, latency µs p50 %.0f p90 %.0f p99 %.0f max %.0f; proof %v: %s",
			s.Datapath, s.OfferedRPS, s.Requests, s.SuccessRatio, l.P50, l.P90, l.P99, l.Max, s.Proof.Verified, s.Proof.Detail)
	}
	for _, name := range []string{none.Name, afxdp.Name} {
		s, ok := got[name]
		if !ok {
			t.Errorf("no step for %s", name)
			continue
		}
		if s.SuccessRatio != 1 || !s.Proof.Verified {
			t.Errorf("%s: success ratio %v, proof %+v", name, s.SuccessRatio, s.Proof)
		}
	}
	if s := got[afxdp.Name]; s.Proof.Counters["nat_hits"] == 0 || s.Proof.Counters["reverse_nat_hits"] == 0 {
		t.Errorf("afxdp proof counters did not move: %v", s.Proof.Counters)
	}
	if os.Getenv("AFXDP_KEEP_RESULTS") != "" {
		t.Logf("results in %s", opts.OutDir)
	}
}
