package chaos

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshbench/meshbench/harness/chaos/impl"

	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/harness/testbed/fake"
	"github.com/meshbench/meshbench/scenarios"
)

func sel(pods ...string) scenarios.ChaosSelector { return scenarios.ChaosSelector{Pods: pods} }

// newFake returns a cluster of nodes n0, n1 with pods n<i>-p<k>, k < 3.
func newFake(t *testing.T) *fake.Cluster {
	t.Helper()
	spec := testbed.Spec{RunID: "c4a05", Nodes: 2}
	for i := range 2 {
		for k := range 3 {
			spec.Pods = append(spec.Pods, testbed.PodSpec{Name: fmt.Sprintf("n%d-p%d", i, k), Node: i})
		}
	}
	c, err := fake.NewCluster(spec)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestResolve(t *testing.T) {
	c := newFake(t)
	env := &Env{Cluster: c, Services: map[string][]*testbed.Pod{"echo": {c.Pod("n1-p0"), c.Pod("n0-p1"), c.Pod("n1-p1")}}}
	tests := []struct {
		name      string
		entry     scenarios.ChaosEntry
		pods      []string
		peers     []string
		direction string
		err       string
	}{
		{name: "pods", entry: scenarios.ChaosEntry{Fault: "loss", Selector: sel("n1-p2", "n0-p0")}, pods: []string{"n0-p0", "n1-p2"}, direction: "to"},
		{name: "service, sorted", entry: scenarios.ChaosEntry{Fault: "delay", Selector: scenarios.ChaosSelector{Services: []string{"echo"}}}, pods: []string{"n0-p1", "n1-p0", "n1-p1"}, direction: "to"},
		{name: "node", entry: scenarios.ChaosEntry{Fault: "delay", Selector: scenarios.ChaosSelector{Nodes: []string{"n1"}}, Direction: "from"}, pods: []string{"n1-p0", "n1-p1", "n1-p2"}, direction: "from"},
		{name: "union without duplicates", entry: scenarios.ChaosEntry{Fault: "loss", Selector: scenarios.ChaosSelector{Pods: []string{"n1-p0"}, Services: []string{"echo"}}}, pods: []string{"n0-p1", "n1-p0", "n1-p1"}, direction: "to"},
		{name: "mode one", entry: scenarios.ChaosEntry{Fault: "pod-kill", Selector: scenarios.ChaosSelector{Services: []string{"echo"}}, Mode: "one"}, pods: []string{"n0-p1"}},
		{name: "mode fixed", entry: scenarios.ChaosEntry{Fault: "pod-kill", Selector: scenarios.ChaosSelector{Services: []string{"echo"}}, Mode: "fixed", Value: "2"}, pods: []string{"n0-p1", "n1-p0"}},
		{name: "mode fixed-percent rounds down, at least one", entry: scenarios.ChaosEntry{Fault: "pod-kill", Selector: scenarios.ChaosSelector{Services: []string{"echo"}}, Mode: "fixed-percent", Value: "10"}, pods: []string{"n0-p1"}},
		{name: "partition defaults to both, with peers", entry: scenarios.ChaosEntry{Fault: "partition", Selector: sel("n0-p0"), Target: &scenarios.ChaosTarget{Selector: scenarios.ChaosSelector{Nodes: []string{"n1"}}, Mode: "one"}}, pods: []string{"n0-p0"}, peers: []string{"n1-p0"}, direction: "both"},
		{name: "unknown pod", entry: scenarios.ChaosEntry{Fault: "loss", Selector: sel("n9-p0")}, err: `no pod "n9-p0"`},
		{name: "unknown service", entry: scenarios.ChaosEntry{Fault: "loss", Selector: scenarios.ChaosSelector{Services: []string{"db"}}}, err: `no service "db"`},
		{name: "unknown node", entry: scenarios.ChaosEntry{Fault: "loss", Selector: scenarios.ChaosSelector{Nodes: []string{"n7"}}}, err: `no node "n7"`},
		{name: "empty", entry: scenarios.ChaosEntry{Fault: "loss"}, err: "selects no pods"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(tt.entry, env)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(podNames(got.Pods), tt.pods) || !slices.Equal(podNames(got.Peers), tt.peers) {
				t.Errorf("pods %v peers %v, want %v %v", podNames(got.Pods), podNames(got.Peers), tt.pods, tt.peers)
			}
			if tt.direction != "" && got.Direction != tt.direction {
				t.Errorf("direction %q, want %q", got.Direction, tt.direction)
			}
			if len(got.Pods)+len(got.Others) != len(c.Pods()) {
				t.Errorf("others %v do not complete the pods", podNames(got.Others))
			}
		})
	}
}

func TestChoose(t *testing.T) {
	for _, tt := range []struct {
		fault, want string
		target      bool
		got         string
	}{
		{"delay", "netem", false, impl.Netem},
		{"delay", "netem", true, impl.NFQueue},
		{"delay", "nfqueue", false, impl.NFQueue},
		{"delay", "", false, impl.NFQueue},
		{"loss", "tc-bpf", false, impl.TCBPF},
		{"loss", "iptables-statistic", false, impl.Statistic},
		{"loss", "", false, impl.Statistic},
		{"partition", "tc-bpf", true, impl.TCBPF},
		{"partition", "iptables-drop", true, impl.IptablesDrop},
		{"bandwidth", "htb", false, impl.TBF},
		{"pod-kill", "", false, impl.Signal},
	} {
		if got := Choose(tt.fault, tt.want, tt.target); got != tt.got {
			t.Errorf("Choose(%s, %s, %v) = %s, want %s", tt.fault, tt.want, tt.target, got, tt.got)
		}
	}
}

func TestTimelineWithoutRun(t *testing.T) {
	if _, err := NewTimeline([]scenarios.ChaosEntry{{Fault: "loss", Duration: scenarios.Duration(time.Second), Loss: &scenarios.LossSpec{Loss: "200"}}}); err == nil {
		t.Error("NewTimeline accepted 200% loss")
	}
	if _, err := NewTimeline([]scenarios.ChaosEntry{{Fault: "delay", Selector: sel("n0-p0")}}); err == nil {
		t.Error("NewTimeline accepted a zero duration and no delay parameters")
	}
	tl, err := NewTimeline(nil)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := tl.Stop(context.Background())
	if err != nil || len(recs) != 0 {
		t.Errorf("Stop before Run = %v, %v", recs, err)
	}
	// Run after Stop does nothing.
	select {
	case <-tl.Run(context.Background(), Env{Cluster: newFake(t)}, time.Now()):
	case <-time.After(time.Second):
		t.Error("Run after Stop did not finish at once")
	}
}

func TestTimelineRecordsFailures(t *testing.T) {
	// pod-kill without StartWorkload fails before killing anything; a
	// fault scheduled after Stop is recorded as not injected.
	c := newFake(t)
	tl, err := NewTimeline([]scenarios.ChaosEntry{
		{Name: "k", Fault: "pod-kill", Duration: scenarios.Duration(time.Second), Selector: sel("n1-p0")},
		{Fault: "pod-kill", At: scenarios.Duration(time.Hour), Duration: scenarios.Duration(time.Second), Selector: sel("n1-p0")},
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	tl.Run(context.Background(), Env{Cluster: c}, start)
	time.Sleep(50 * time.Millisecond)
	recs, err := tl.Stop(context.Background())
	if err == nil || !strings.Contains(err.Error(), "StartWorkload") {
		t.Errorf("Stop error %v, want the pod-kill failure", err)
	}
	if r := recs[0]; r.Name != "k" || r.StartS < 0 || !strings.Contains(r.Error, "StartWorkload") || !slices.Equal(r.Pods, []string{"n1-p0"}) || r.Selector != "pods=n1-p0" {
		t.Errorf("record 0 = %+v", r)
	}
	if r := recs[1]; r.Name != "pod-kill-1" || r.StartS != -1 || r.EndS != -1 || !strings.Contains(r.Error, "not injected") {
		t.Errorf("record 1 = %+v", r)
	}
}

// TestOnAgents: on a cluster reached through node agents, tc-bpf (loaded
// in the harness's process) gives way to iptables; what acts through a
// Host stays.
func TestOnAgents(t *testing.T) {
	for _, tc := range []struct{ fault, using, want string }{
		{scenarios.FaultLoss, impl.TCBPF, impl.Statistic},
		{scenarios.FaultPartition, impl.TCBPF, impl.IptablesDrop},
		{scenarios.FaultLoss, impl.Statistic, impl.Statistic},
		{scenarios.FaultBandwidth, impl.TBF, impl.TBF},
		{scenarios.FaultDelay, impl.NFQueue, impl.NFQueue},
		{scenarios.FaultPodKill, impl.Signal, impl.Signal},
	} {
		if got := OnAgents(tc.fault, tc.using); got != tc.want {
			t.Errorf("OnAgents(%s, %s) = %s, want %s", tc.fault, tc.using, got, tc.want)
		}
	}
}
