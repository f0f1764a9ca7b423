package reports

import (
	"strings"
	"testing"
)

// The headline names a winner only where its repetitions are significantly
// below every other mesh's; otherwise it names the tie.
func TestHeadlineTies(t *testing.T) {
	base5 := []float64{100, 103, 98, 101, 99}
	tests := []struct {
		name     string
		p99      map[string][]float64
		wantP99  string // substring of the tail latency line
		wantCPU  string // substring of the CPU line
		notInP99 string
	}{
		{
			name:    "ranges apart: a winner",
			p99:     map[string][]float64{"none": base5, "sidecar": scale(base5, 2), "sockmap": scale(base5, 1.5)},
			wantP99: "Lowest tail latency of the meshes at 1000 req/s: sockmap (p99 150 µs, 1.5× none).",
			// Every mesh has the same CPU in synthRun.
			wantCPU: "Lowest CPU per request of the meshes: a tie between sidecar (60 µs, 1.00× none) and sockmap (60 µs, 1.00× none): their repetitions do not differ significantly.",
		},
		{
			name: "overlapping repetitions: a tie, lowest median first",
			p99: map[string][]float64{"none": base5,
				"sidecar": {150, 210, 170, 190, 160}, "sockmap": {140, 200, 180, 175, 165}},
			wantP99:  "Lowest tail latency of the meshes at 1000 req/s: a tie between sidecar (p99 170 µs, 1.7× none) and sockmap (p99 175 µs, 1.8× none): their repetitions do not differ significantly.",
			notInP99: "Lowest tail latency of the meshes at 1000 req/s: sidecar (",
		},
		{
			name: "5 repetitions, one overlap: significant by the U test",
			p99: map[string][]float64{"none": base5,
				"sidecar": {150, 160, 170, 180, 200}, "sockmap": {110, 120, 130, 140, 155}},
			wantP99: "Lowest tail latency of the meshes at 1000 req/s: sockmap (p99 130 µs",
		},
		{
			name: "three meshes: best below one, tied with another",
			p99: map[string][]float64{"none": base5,
				"sidecar": scale(base5, 3), "sockmap": {140, 200, 180, 175, 165}, "nodeproxy": {150, 210, 170, 190, 160}},
			wantP99:  "a tie between nodeproxy (p99 170 µs, 1.7× none) and sockmap (p99 175 µs, 1.8× none):",
			notInP99: "sidecar",
		},
		{
			name:    "one repetition: never a winner",
			p99:     map[string][]float64{"none": {100}, "sidecar": {200}, "sockmap": {120}},
			wantP99: "a tie between sockmap (p99 120 µs, 1.2× none) and sidecar (p99 200 µs, 2.0× none): 1 repetition(s) are too few to tell them apart (3 or more are needed).",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newModel(synthRun("r", tc.p99))
			lines := headlineLines(m, m.refRate(), extrapolation{})
			if len(lines) != 2 {
				t.Fatalf("headline %q, want a latency and a CPU line", lines)
			}
			if !strings.Contains(lines[0], tc.wantP99) || tc.notInP99 != "" && strings.Contains(lines[0], tc.notInP99) {
				t.Errorf("latency line\n%s\nwant %q (and not %q)", lines[0], tc.wantP99, tc.notInP99)
			}
			if tc.wantCPU != "" && lines[1] != tc.wantCPU {
				t.Errorf("CPU line\n%s\nwant\n%s", lines[1], tc.wantCPU)
			}
		})
	}
}

// The memory line names the smallest datapath only when the next is more
// than memoryTie larger.
func TestHeadlineMemoryTie(t *testing.T) {
	m := newModel(synthRun("r", map[string][]float64{"none": {100}, "sidecar": {200}, "sockmap": {150}}))
	row := func(dp string, gib float64) extrapolationRow {
		return extrapolationRow{Datapath: dp, Model: "per-pod", Measured: true,
			Scales: []scaleCost{{Nodes: 500, PodsPerNode: 30, Bytes: gib * (1 << 30)}}}
	}
	for _, tc := range []struct {
		rows []extrapolationRow
		want string
	}{
		{[]extrapolationRow{row("sidecar", 150), row("nodeproxy", 25)}, "Smallest datapath memory at 500 nodes × 30 pods: nodeproxy (25.0 GiB; next sidecar, 150 GiB)."},
		{[]extrapolationRow{row("sidecar", 150), row("sockmap", 143)}, "Datapath memory at 500 nodes × 30 pods: a tie between sockmap (143 GiB) and sidecar (150 GiB), within 10%."},
	} {
		lines := headlineLines(m, m.refRate(), extrapolation{Rows: tc.rows})
		if got := lines[len(lines)-1]; got != tc.want {
			t.Errorf("memory line\n%s\nwant\n%s", got, tc.want)
		}
	}
}
