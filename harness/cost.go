package harness

import (
	"cmp"
	"slices"

	"github.com/meshbench/meshbench/harness/metrics"
	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/stream"
	"github.com/meshbench/meshbench/harness/testbed"
)

// fillCost fills step's per-request cost and process records from the
// measured window's deltas. The load client reports its own CPU time and
// context switches over the measured window (it exits before the harness's
// closing snapshot); every other process comes from the snapshots, each
// with its descendants (metrics.ReadTree): a proxy wrapper's Envoy child is
// charged to the datapath.
func fillCost(step *results.Step, cluster testbed.Cluster, client *testbed.Process, sum *stream.Summary, d metrics.Delta) {
	procs := map[int]*testbed.Process{}
	for _, p := range cluster.Processes() {
		procs[p.PID] = p
	}
	var cpu [3]float64 // client, server, datapath
	var switches int64
	role := func(r string) int {
		switch r {
		case results.RoleClient:
			return 0
		case results.RoleServer:
			return 1
		default:
			return 2
		}
	}
	for pid, pd := range d.Procs {
		p := procs[pid]
		if p == nil || p == client || p.Role == results.RoleChaos {
			continue
		}
		cpu[role(p.Role)] += pd.CPUSeconds
		switches += pd.ContextSwitches()
		rp := results.Process{
			Pod: p.Pod, Node: p.Node, Name: p.Name, Role: p.Role, PID: pid,
			RSSBytes: pd.RSSBytes, PSSBytes: pd.PSSBytes, USSBytes: pd.USSBytes,
			CPUSeconds: pd.CPUSeconds, ContextSwitches: pd.ContextSwitches(),
		}
		for _, m := range pd.Descendants {
			rp.Descendants = append(rp.Descendants, results.Descendant{
				PID: m.PID, Comm: m.Comm, RSSBytes: m.RSSBytes, PSSBytes: m.PSSBytes, USSBytes: m.USSBytes, CPUSeconds: m.CPUSeconds,
			})
		}
		step.Processes = append(step.Processes, rp)
	}
	if client != nil {
		cpu[0] += sum.ClientCPUSeconds
		switches += sum.ClientContextSwitches
		step.Processes = append(step.Processes, results.Process{
			Pod: client.Pod, Node: client.Node, Name: client.Name, Role: client.Role, PID: client.PID,
			RSSBytes: sum.ClientRSSBytes, CPUSeconds: sum.ClientCPUSeconds, ContextSwitches: sum.ClientContextSwitches,
		})
	}
	sortProcesses(step.Processes)
	c := &step.Cost
	c.TCPInSegs, c.TCPOutSegs = d.TCP.InSegs, d.TCP.OutSegs
	c.ContextSwitches = switches
	c.CPUSeconds = cpu[0] + cpu[1] + cpu[2]
	n := float64(step.Requests)
	if n == 0 {
		return
	}
	c.SegmentsPerRequest = float64(d.TCP.InSegs+d.TCP.OutSegs) / n
	c.ContextSwitchesPerReq = float64(switches) / n
	c.CPUMicrosPerRequest = c.CPUSeconds * 1e6 / n
	c.ClientCPUMicrosPerReq = cpu[0] * 1e6 / n
	c.ServerCPUMicrosPerReq = cpu[1] * 1e6 / n
	c.DatapathCPUMicrosPerReq = cpu[2] * 1e6 / n
}

func sortProcesses(ps []results.Process) {
	slices.SortFunc(ps, func(a, b results.Process) int {
		return cmp.Or(cmp.Compare(a.Role, b.Role), cmp.Compare(a.Pod, b.Pod), cmp.Compare(a.Name, b.Name), cmp.Compare(a.PID, b.PID))
	})
}
