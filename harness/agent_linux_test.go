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
// Exec; has the proxies reach the xDS server through a socket the agents
// expose on their nodes; and reads the processes' CPU, memory and context
// switches and the namespaces' TCP counters through the agents' Snapshot. Every proof must
// be verified. The agents' call counts show the work went through them.
//
// The cgroup BPF (sockmap, connect4 steering) is loaded by the agents and
// its maps read through them. Not yet through the agents: afxdp's
// checksum-offload ioctls and its read of MACs (its XDP is the forwarder's,
// a node process the agents start) and chaos's qdiscs; those still act on
// this host.
func TestAgentDatapaths(t *testing.T) {
	testutil.Privileged(t)
	links := testutil.BPFLinks(t)
	defer testutil.CheckNoNewLinks(t, links)
	for _, tt := range []struct {
		datapath string
		execs    bool // its rules go through Exec
		xds      bool // its proxies reach the control plane through the agents
		bpf      bool // its cgroup BPF is loaded and read by the agents
	}{
		{"none", false, false, false},
		{"sidecar", true, true, false},
		{"sockmap", true, true, true},
		{"nodeproxy", true, true, true},
		{"afxdp", false, false, false},
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
			calls := prov.Calls()
			t.Logf("%s: proof verified; through the agents: %+v", tt.datapath, calls)
			if calls.Starts == 0 {
				t.Errorf("no process was started through the agents")
			}
			if calls.Dials == 0 {
				t.Errorf("no counter read went through the agents")
			}
			if calls.Snapshots == 0 {
				t.Errorf("no process or namespace was read through the agents")
			}
			if tt.xds && calls.Exposed == 0 {
				t.Errorf("no proxy reached the xDS server through the agents")
			}
			if tt.bpf != (calls.BPF > 0) {
				t.Errorf("%d BPF calls through the agents, want them: %v", calls.BPF, tt.bpf)
			}
			if tt.execs && calls.Execs == 0 {
				t.Errorf("%d Exec calls: the rules did not go through the agents", calls.Execs)
			}
		})
	}
}
