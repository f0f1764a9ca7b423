package reports

import (
	"strings"
	"testing"

	"github.com/meshbench/meshbench/harness/results"
)

// TestExtrapolationTerms checks the extrapolation's arithmetic for each
// placement, with and without USS in the results: per pod, the sidecar's
// private memory, and its shared pages once per node; per node, the node's
// process less what its pods hold inside it; every node its BPF.
func TestExtrapolationTerms(t *testing.T) {
	const mib = 1 << 20
	// proc has rss MiB resident, uss of them private; PSS splits the rest
	// with one other process.
	proc := func(pod, node string, rss, uss int64) results.Process {
		return results.Process{Pod: pod, Node: node, Name: "p", Role: results.RoleDatapath,
			RSSBytes: rss * mib, USSBytes: uss * mib, PSSBytes: (uss + (rss-uss)/2) * mib}
	}
	echo := func(pod, node string) results.Process {
		return results.Process{Pod: pod, Node: node, Name: "echo", Role: results.RoleServer, PSSBytes: 5 * mib}
	}
	steps := []results.Step{
		{Datapath: "sidecar", Processes: []results.Process{proc("a", "n0", 30, 10), proc("b", "n1", 30, 10), echo("a", "n0"), echo("b", "n1")},
			Footprint: &results.Footprint{Basis: "per pod: its sidecar"}},
		{Datapath: "sockmap", Processes: []results.Process{proc("a", "n0", 30, 10), proc("b", "n1", 30, 10)},
			Footprint: &results.Footprint{BPFBytes: 11 * mib, BPFCopies: 1, Basis: "sidecar and BPF"}},
		{Datapath: "nodeproxy", Processes: []results.Process{proc("", "n0", 40, 20), proc("", "n1", 40, 20)},
			Footprint: &results.Footprint{BPFBytes: 20 * mib, BPFCopies: 2, Basis: "node proxy and BPF"}},
		// Two forwarders holding three pod sockets of 12 MiB between them.
		{Datapath: "afxdp", Processes: []results.Process{proc("", "n0", 70, 50), proc("", "n1", 58, 38), echo("a", "n0"), echo("b", "n0"), echo("c", "n1")},
			Footprint: &results.Footprint{BPFBytes: 2 * mib, BPFCopies: 2, PodBytes: 12 * mib, PodUnits: 3, Basis: "forwarder, sockets, BPF"}},
		// Result files from before USS and footprints: PSS for a sidecar.
		{Datapath: "old-pod", Processes: []results.Process{{Pod: "a", Name: "p", Role: results.RoleDatapath, RSSBytes: 30 * mib, PSSBytes: 20 * mib}}},
		{Datapath: "old-node", Processes: []results.Process{{Node: "n0", Name: "p", Role: results.RoleDatapath, RSSBytes: 50 * mib, PSSBytes: 40 * mib}}},
	}
	m := newModel(&results.Run{Steps: steps})
	sc := []Scale{{Nodes: 10, PodsPerNode: 30}}
	ex := extrapolationData(m, memoryData(m), sc)
	rows := ex.byDatapath()
	tests := []struct {
		dp              string
		perPod, perNode float64 // MiB
		counts          []string
	}{
		{"sidecar", 10, 20, []string{"USS", "per pod: its sidecar"}},
		{"sockmap", 10, 20 + 11, []string{"USS", "sidecar and BPF"}},
		{"nodeproxy", 0, 40 + 10, []string{"RSS", "node proxy and BPF"}},
		// Median forwarder RSS 64 MiB less 1.5 sockets × 12 MiB, plus 1 MiB BPF.
		{"afxdp", 12, 64 - 18 + 1, []string{"RSS", "forwarder, sockets, BPF"}},
		{"old-pod", 20, 0, []string{"PSS per proxy (these results record no USS)", "no footprint"}},
		{"old-node", 0, 50, []string{"RSS", "no footprint"}},
	}
	for _, tt := range tests {
		t.Run(tt.dp, func(t *testing.T) {
			r, ok := rows[tt.dp]
			if !ok || !r.Measured {
				t.Fatalf("row %+v", r)
			}
			if r.PerPodBytes != tt.perPod*mib || r.PerNodeBytes != tt.perNode*mib {
				t.Errorf("per pod %.1f MiB, per node %.1f MiB; want %.1f, %.1f", r.PerPodBytes/mib, r.PerNodeBytes/mib, tt.perPod, tt.perNode)
			}
			for _, c := range tt.counts {
				if !strings.Contains(r.Counts, c) {
					t.Errorf("counts %q lack %q", r.Counts, c)
				}
			}
			if want := 10 * (tt.perNode + 30*tt.perPod) * mib; r.Scales[0].Bytes != want {
				t.Errorf("at 10 nodes × 30 pods: %.0f MiB, want %.0f", r.Scales[0].Bytes/mib, want/mib)
			}
		})
	}
}
