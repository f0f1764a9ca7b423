package reports

import (
	"testing"

	"github.com/meshbench/meshbench/harness/results"
)

// TestExtrapolationTerms checks the extrapolation's arithmetic for each
// placement: per pod, the sidecar; per node, the node's process less what
// its pods hold inside it, plus one node's BPF.
func TestExtrapolationTerms(t *testing.T) {
	const mib = 1 << 20
	proc := func(pod, node string, pss int64) results.Process {
		return results.Process{Pod: pod, Node: node, Name: "p", Role: results.RoleDatapath, PSSBytes: pss, RSSBytes: pss}
	}
	echo := func(pod, node string) results.Process {
		return results.Process{Pod: pod, Node: node, Name: "echo", Role: results.RoleServer, PSSBytes: 5 * mib}
	}
	steps := []results.Step{
		{Datapath: "sidecar", Processes: []results.Process{proc("a", "n0", 30*mib), proc("b", "n1", 30*mib), echo("a", "n0"), echo("b", "n1")},
			Footprint: &results.Footprint{Basis: "per pod: its sidecar"}},
		{Datapath: "sockmap", Processes: []results.Process{proc("a", "n0", 30*mib), proc("b", "n1", 30*mib)},
			Footprint: &results.Footprint{BPFBytes: 11 * mib, BPFCopies: 1, Basis: "sidecar and BPF"}},
		{Datapath: "nodeproxy", Processes: []results.Process{proc("", "n0", 40*mib), proc("", "n1", 40*mib)},
			Footprint: &results.Footprint{BPFBytes: 20 * mib, BPFCopies: 2}},
		// Two forwarders holding three pod sockets of 12 MiB between them.
		{Datapath: "afxdp", Processes: []results.Process{proc("", "n0", 70*mib), proc("", "n1", 58*mib), echo("a", "n0"), echo("b", "n0"), echo("c", "n1")},
			Footprint: &results.Footprint{BPFBytes: 2 * mib, BPFCopies: 2, PodBytes: 12 * mib, PodUnits: 3}},
		// A result file from before footprints: processes only.
		{Datapath: "old-node", Processes: []results.Process{proc("", "n0", 40*mib)}},
	}
	m := newModel(&results.Run{Steps: steps})
	sc := []Scale{{Nodes: 10, PodsPerNode: 30}}
	ex := extrapolationData(m, memoryData(m), sc)
	rows := ex.byDatapath()
	tests := []struct {
		dp              string
		perPod, perNode float64 // MiB
		counts          string
	}{
		{"sidecar", 30, 0, "per pod: its sidecar"},
		{"sockmap", 30, 11, "sidecar and BPF"},
		{"nodeproxy", 0, 40 + 10, "the datapath processes' memory and its recorded footprint"},
		// Median forwarder 64 MiB less 1.5 sockets × 12 MiB, plus 1 MiB BPF.
		{"afxdp", 12, 64 - 18 + 1, "the datapath processes' memory and its recorded footprint"},
		{"old-node", 0, 40, "the datapath processes' memory only: these results record no footprint, so BPF programs and maps and any per-pod memory inside a per-node process are not counted"},
	}
	for _, tt := range tests {
		t.Run(tt.dp, func(t *testing.T) {
			r, ok := rows[tt.dp]
			if !ok || !r.Measured {
				t.Fatalf("row %+v", r)
			}
			if r.PerPodBytes != tt.perPod*mib || r.PerNodeBytes != tt.perNode*mib || r.Counts != tt.counts {
				t.Errorf("per pod %.1f MiB, per node %.1f MiB, counts %q; want %.1f, %.1f, %q",
					r.PerPodBytes/mib, r.PerNodeBytes/mib, r.Counts, tt.perPod, tt.perNode, tt.counts)
			}
			if want := 10 * (tt.perNode + 30*tt.perPod) * mib; r.Scales[0].Bytes != want {
				t.Errorf("at 10 nodes × 30 pods: %.0f MiB, want %.0f", r.Scales[0].Bytes/mib, want/mib)
			}
		})
	}
}
