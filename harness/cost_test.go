package harness

import (
	"slices"
	"testing"

	"github.com/meshbench/meshbench/harness/metrics"
	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/stream"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/harness/testbed/fake"
)

// TestFillCostChargesDescendants: a proxy wrapper's child (the Envoy
// binary) is in the wrapper's delta, so the datapath is charged for both
// and the record names the child.
func TestFillCostChargesDescendants(t *testing.T) {
	c, err := fake.NewCluster(testbed.Spec{RunID: "c0ffee", Nodes: 1, Pods: []testbed.PodSpec{{Name: "a", Node: 0}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	proxy, err := c.Start(ctx, c.Pod("a"), testbed.ProcessSpec{Name: "sidecar", Role: results.RoleDatapath, Args: []string{"proxy"}})
	if err != nil {
		t.Fatal(err)
	}
	echo, err := c.Start(ctx, c.Pod("a"), testbed.ProcessSpec{Name: "echo", Role: results.RoleServer, Args: []string{"echo"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Destroy(ctx) })
	d := metrics.Delta{Procs: map[int]metrics.ProcDelta{
		proxy.PID: {PID: proxy.PID, Comm: "meshbench", CPUSeconds: 0.5, VoluntaryCtxt: 70, RSSBytes: 90 << 20, PSSBytes: 80 << 20,
			Descendants: []metrics.Member{{PID: 4242, PPID: proxy.PID, Comm: "envoy"}}},
		echo.PID: {PID: echo.PID, Comm: "meshbench", CPUSeconds: 0.25, VoluntaryCtxt: 30},
	}}
	step := &results.Step{Requests: 1000}
	fillCost(step, c, nil, &stream.Summary{}, d)
	if got := step.Cost.DatapathCPUMicrosPerReq; got != 500 {
		t.Errorf("datapath CPU %v µs/req, want 500 (wrapper and Envoy together)", got)
	}
	if got := step.Cost.ContextSwitchesPerReq; got != 0.1 {
		t.Errorf("context switches %v/req, want 0.1", got)
	}
	i := slices.IndexFunc(step.Processes, func(p results.Process) bool { return p.Name == "sidecar" })
	if i < 0 {
		t.Fatalf("no sidecar record in %+v", step.Processes)
	}
	if p := step.Processes[i]; !slices.Equal(p.Descendants, []results.Descendant{{PID: 4242, Comm: "envoy"}}) || p.PSSBytes != 80<<20 {
		t.Errorf("sidecar record %+v, want its Envoy child named and its PSS", p)
	}
}
