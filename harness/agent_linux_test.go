package harness_test

import (
	"context"
	"testing"

	"github.com/meshbench/meshbench/harness"
	"github.com/meshbench/meshbench/harness/agent"
	"github.com/meshbench/meshbench/harness/testbed/testutil"
)

// TestAgentDatapaths runs every datapath on the embedded testbed with a
// node agent on each node (agent.Provider), as on Kubernetes: the harness
// starts every process (echo servers, load client, proxies, forwarders)
// through the agents' Start, in the pods' and nodes' namespaces and in
// cgroups under theirs, with the client's output streamed back; reads the
// echo servers' and proxies' counters over the agents' Dial streams; and
// writes the sidecar's and node proxy's iptables rules through the agents'
// Exec. Every proof must be verified. The agents' call counts show the
// work went through them.
//
// Not yet through the agents: BPF attachment (sockmap, connect4, XDP),
// chaos's qdiscs, and the /proc and cgroup metrics; those still act on
// this host directly.
func TestAgentDatapaths(t *testing.T) {
	testutil.Privileged(t)
	links := bpfLinks(t)
	defer checkNoNewLinks(t, links)
	for _, tt := range []struct {
		datapath string
		execs    bool // its rules go through Exec
	}{
		{"none", false},
		{"sidecar", true},
		{"sockmap", true},
		{"nodeproxy", true},
		{"afxdp", false},
	} {
		t.Run(tt.datapath, func(t *testing.T) {
			opts := options(t, testScenario+"datapaths: ["+tt.datapath+"]\n")
			prov := &agent.Provider{Inner: opts.Provider, Exec: opts.Exec}
			opts.Provider = prov
			run, err := harness.Run(context.Background(), opts)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			s := run.Steps[0]
			if !s.Proof.Verified || s.SuccessRatio != 1 {
				t.Fatalf("%s through agents: proof %+v, success %v", tt.datapath, s.Proof, s.SuccessRatio)
			}
			// The processes the agents started are measured like others.
			if s.Cost.CPUMicrosPerRequest <= 0 || s.Cost.ClientCPUMicrosPerReq <= 0 {
				t.Errorf("cpu per request not measured: %+v", s.Cost)
			}
			for _, p := range s.Processes {
				if p.RSSBytes == 0 {
					t.Errorf("process %s (%s) in %s%s: no memory figures", p.Name, p.Role, p.Pod, p.Node)
				}
			}
			execs, dials, starts := prov.Calls()
			t.Logf("%s: proof verified; %d Start, %d Exec and %d Dial calls through the agents", tt.datapath, starts, execs, dials)
			if starts == 0 {
				t.Errorf("no process was started through the agents")
			}
			if dials == 0 {
				t.Errorf("no counter read went through the agents")
			}
			if tt.execs && execs == 0 {
				t.Errorf("%d Exec calls: the rules did not go through the agents", execs)
			}
		})
	}
}
