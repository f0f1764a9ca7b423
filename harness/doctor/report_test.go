package doctor

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/meshbench/meshbench/internal/golden"
)

// fixedFeatures resembles the development host: netem, envoy and the kind
// toolchain absent, everything else present.
func fixedFeatures() []Feature {
	absent := map[string]string{
		FeatNetem:        "adding a netem qdisc to a veth in a throwaway netns failed: no such file or directory (CONFIG_NET_SCH_NETEM)",
		FeatEnvoy:        "envoy not on PATH",
		FeatDockerDaemon: "no daemon answered `docker info`: Cannot connect to the Docker daemon",
		FeatKind:         "kind not on PATH",
		FeatClang:        "clang not on PATH",
	}
	pkgs := map[string]string{FeatClang: "clang"}
	groups := map[string]string{
		FeatRoot: GroupHost, FeatNetns: GroupHost, FeatVeth: GroupHost, FeatCgroupV2: GroupHost,
		FeatBPF: GroupBPF, FeatProgSockAddr: GroupBPF, FeatProgSchedCLS: GroupBPF,
		FeatIptables: GroupNetfilter, FeatXtNFQUEUE: GroupNetfilter,
		FeatNetem: GroupQdisc, FeatTBF: GroupQdisc, FeatClsact: GroupQdisc,
		FeatEnvoy: GroupTools, FeatDocker: GroupTools, FeatDockerDaemon: GroupTools, FeatKind: GroupTools, FeatClang: GroupTools,
	}
	var out []Feature
	for _, name := range []string{
		FeatRoot, FeatNetns, FeatVeth, FeatCgroupV2, FeatBPF, FeatProgSockAddr, FeatProgSchedCLS,
		FeatIptables, FeatXtNFQUEUE, FeatNetem, FeatTBF, FeatClsact,
		FeatEnvoy, FeatDocker, FeatDockerDaemon, FeatKind, FeatClang,
	} {
		f := Feature{Name: name, Group: groups[name], Present: true, Detail: "found"}
		if d, ok := absent[name]; ok {
			f.Present, f.Detail, f.Package = false, d, pkgs[name]
		}
		out = append(out, f)
	}
	return out
}

func TestWriteTextGolden(t *testing.T) {
	fs := fixedFeatures()
	r := Report{Kernel: "6.18.0-test", Features: fs, Requirements: evaluate(fs)}
	var buf bytes.Buffer
	if err := r.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("testdata", "report.golden"), buf.Bytes())
}

func TestWriteJSONRoundTrip(t *testing.T) {
	fs := fixedFeatures()
	r := Report{Kernel: "6.18.0-test", Features: fs, Requirements: evaluate(fs)}
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r) {
		t.Errorf("round trip changed the report:\n got %+v\nwant %+v", back, r)
	}
}

func TestEvaluate(t *testing.T) {
	all := func(except ...string) []Feature {
		var fs []Feature
		for _, s := range specs {
			for _, a := range s.alts {
				for _, n := range a.needs {
					fs = append(fs, Feature{Name: n, Present: !slices.Contains(except, n)})
				}
			}
		}
		return fs
	}
	tests := []struct {
		name       string
		features   []Feature
		kind, item string
		ready      bool
		using      string
		missing    []string
	}{
		{"delay prefers netem", all(), KindFault, "delay", true, "netem", nil},
		{"delay falls back to nfqueue", all(FeatNetem), KindFault, "delay", true, "nfqueue", nil},
		{"delay impossible", all(FeatNetem, FeatXtNFQUEUE), KindFault, "delay", false, "", []string{FeatNetem}},
		{"loss prefers tc bpf", all(), KindFault, "loss", true, "tc-bpf", nil},
		{"loss falls back to statistic", all(FeatClsact), KindFault, "loss", true, "iptables-statistic", nil},
		{"bandwidth falls back to htb", all(FeatTBF), KindFault, "bandwidth", true, "htb", nil},
		{"sidecar needs owner match", all(FeatXtOwner), KindDatapath, "sidecar", false, "", []string{FeatXtOwner}},
		{"afxdp needs AF_XDP", all(FeatAFXDP, FeatXDPVeth), KindDatapath, "afxdp", false, "", []string{FeatXDPVeth, FeatAFXDP}},
		{"nodeproxy without cgroup v2", all(FeatCgroupV2), KindDatapath, "nodeproxy", false, "", []string{FeatCgroupV2}},
		{"nothing needs nothing", nil, KindEngine, "builtin", true, "", nil},
		{"kind needs a docker engine, not the kind command", all(FeatKind), KindProvider, "kind", true, "", nil},
		{"kind without a docker engine", all(FeatDockerDaemon), KindProvider, "kind", false, "", []string{FeatDockerDaemon}},
		{"no features at all", nil, KindDatapath, "none", false, "", []string{FeatRoot, FeatNetns, FeatVeth}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Report{Requirements: evaluate(tt.features)}
			q, ok := r.Requirement(tt.kind, tt.item)
			if !ok {
				t.Fatalf("no %s %s", tt.kind, tt.item)
			}
			if q.Ready != tt.ready || q.Using != tt.using || !slices.Equal(q.Missing, tt.missing) {
				t.Errorf("got ready=%v using=%q missing=%v (%s); want ready=%v using=%q missing=%v",
					q.Ready, q.Using, q.Missing, q.Detail, tt.ready, tt.using, tt.missing)
			}
		})
	}
}

func TestNames(t *testing.T) {
	if got, want := Names(KindDatapath), []string{"none", "sidecar", "sockmap", "nodeproxy", "afxdp"}; !slices.Equal(got, want) {
		t.Errorf("datapaths %v, want %v", got, want)
	}
	if got, want := Names(KindFault), []string{"pod-kill", "proxy-kill", "delay", "loss", "partition", "bandwidth"}; !slices.Equal(got, want) {
		t.Errorf("faults %v, want %v", got, want)
	}
}

func TestReportLookups(t *testing.T) {
	fs := fixedFeatures()
	r := Report{Features: fs, Requirements: evaluate(fs)}
	if !r.Has(FeatRoot) || r.Has(FeatNetem) || r.Has("no-such-feature") {
		t.Error("Has disagrees with the features")
	}
	if f, ok := r.Feature(FeatClang); !ok || f.Package != "clang" {
		t.Errorf("Feature(clang) = %+v, %v", f, ok)
	}
	if _, ok := r.Requirement(KindFault, "no-such-fault"); ok {
		t.Error("Requirement found a fault that does not exist")
	}
}
