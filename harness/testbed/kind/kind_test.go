package kind

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/yaml"

	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/harness/testbed/kube"
	"github.com/meshbench/meshbench/internal/golden"
)

// TestAddressPlan checks that every range of the plan is inside
// 198.18.0.0/15 (so never in 10/8, 172.16/12, 192.168/16 or public
// space), that no two overlap, and that the node subnets, whose bridges
// live in the host's namespace, stay apart from the embedded testbed's
// and the test Kubernetes nodes' ranges.
func TestAddressPlan(t *testing.T) {
	if Benchmark != netip.MustParsePrefix("198.18.0.0/15") {
		t.Fatalf("Benchmark is %s", Benchmark)
	}
	named := map[string]netip.Prefix{"pods": PodSubnet, "services": ServiceSubnet}
	for i := range MaxNetworks {
		s := NodeSubnet(i)
		named[fmt.Sprintf("node subnet %d", i)] = s
		if !NodeSubnets.Contains(s.Addr()) || s.Bits() != 24 {
			t.Errorf("node subnet %d = %s, not a /24 of %s", i, s, NodeSubnets)
		}
		if g := Gateway(s); !s.Contains(g) || g == s.Addr() || g != s.Addr().Next() {
			t.Errorf("gateway of %s = %s, want its first host address", s, g)
		}
	}
	if NodeSubnet(0) != netip.MustParsePrefix("198.19.2.0/24") {
		t.Errorf("first node subnet %s, want 198.19.2.0/24", NodeSubnet(0))
	}
	forbidden := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("192.168.0.0/16"),
	}
	// Apart from: the embedded testbed (pods, fabric, VIPs) and the test
	// Kubernetes nodes (internal/kubeenv).
	others := []netip.Prefix{
		netip.MustParsePrefix("198.18.0.0/20"), netip.MustParsePrefix("198.19.0.0/24"),
		netip.MustParsePrefix("198.19.128.0/17"), netip.MustParsePrefix("198.19.1.0/24"),
	}
	var names []string
	for n := range named {
		names = append(names, n)
	}
	slices.Sort(names)
	for i, a := range names {
		p := named[a]
		if p != p.Masked() || !p.Addr().Is4() {
			t.Errorf("%s %s: not a masked IPv4 prefix", a, p)
		}
		if !Benchmark.Contains(p.Addr()) || p.Bits() < Benchmark.Bits() {
			t.Errorf("%s %s is not inside %s", a, p, Benchmark)
		}
		for _, f := range forbidden {
			if p.Overlaps(f) {
				t.Errorf("%s %s overlaps %s", a, p, f)
			}
		}
		for _, b := range names[i+1:] {
			if p.Overlaps(named[b]) {
				t.Errorf("%s %s overlaps %s %s", a, p, b, named[b])
			}
		}
		for _, o := range others {
			if p.Overlaps(o) {
				t.Errorf("%s %s overlaps %s", a, p, o)
			}
		}
	}
	if !APIServerAddress.IsLoopback() {
		t.Errorf("API server published on %s, not loopback", APIServerAddress)
	}
}

// kindNameRe and kind's limits: cluster names match it, and the control
// plane's host name (name + "-control-plane") fits in 64 characters.
var kindNameRe = regexp.MustCompile(`^[a-z0-9.-]+$`)

func TestClusterName(t *testing.T) {
	tests := []struct {
		runID, want, err string
	}{
		{"a1b2c3", "meshbench-a1b2c3", ""},
		{"0", "meshbench-0", ""},
		{"0123456789abcdef", "meshbench-0123456789abcdef", ""},
		{"", "", "want 1 to 16 lower-case hex digits"},
		{"A1B2C3", "", "want 1 to 16"},
		{"xyz", "", "want 1 to 16"},
		{"a/b", "", "want 1 to 16"},
		{"0123456789abcdef0", "", "want 1 to 16"},
	}
	for _, tt := range tests {
		t.Run(tt.runID, func(t *testing.T) {
			got, err := ClusterName(tt.runID)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ClusterName(%q) = %q, %v; want an error containing %q", tt.runID, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ClusterName(%q) = %q, %v; want %q", tt.runID, got, err, tt.want)
			}
			if !kindNameRe.MatchString(got) || len(got) > maxNameLen || len(got+"-control-plane") > 64 {
				t.Errorf("%q breaks kind's naming limits", got)
			}
		})
	}
}

// TestConfig checks the kind configuration for 1, 2 and 3 nodes: the
// roles, the networking of the address plan, and the whole file against
// a golden copy (go test -update rewrites it).
func TestConfig(t *testing.T) {
	tests := []struct {
		nodes int
		roles []v1alpha4.NodeRole
	}{
		{1, []v1alpha4.NodeRole{"control-plane"}},
		{2, []v1alpha4.NodeRole{"control-plane", "worker", "worker"}},
		{3, []v1alpha4.NodeRole{"control-plane", "worker", "worker", "worker"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d nodes", tt.nodes), func(t *testing.T) {
			cfg := Config("meshbench-abc123", tt.nodes, "")
			var roles []v1alpha4.NodeRole
			for _, n := range cfg.Nodes {
				roles = append(roles, n.Role)
			}
			if !slices.Equal(roles, tt.roles) {
				t.Errorf("roles %v, want %v", roles, tt.roles)
			}
			if got := clusterNodes(tt.nodes); got != len(tt.roles) {
				t.Errorf("clusterNodes(%d) = %d, want %d", tt.nodes, got, len(tt.roles))
			}
			nw := cfg.Networking
			if nw.IPFamily != v1alpha4.IPv4Family || nw.PodSubnet != "198.18.128.0/17" || nw.ServiceSubnet != "198.19.64.0/18" ||
				nw.KubeProxyMode != v1alpha4.IPTablesProxyMode || nw.APIServerAddress != "127.0.0.1" || nw.DisableDefaultCNI {
				t.Errorf("networking %+v", nw)
			}
			if cfg.Name != "meshbench-abc123" || cfg.Kind != "Cluster" || cfg.APIVersion != "kind.x-k8s.io/v1alpha4" {
				t.Errorf("name %q, kind %q, apiVersion %q", cfg.Name, cfg.Kind, cfg.APIVersion)
			}
			out, err := yaml.Marshal(cfg)
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", fmt.Sprintf("config-%d.yaml", tt.nodes)), out)
		})
	}
	cfg := Config("meshbench-abc123", 2, "kindest/node:v1.37.0")
	for _, n := range cfg.Nodes {
		if n.Image != "kindest/node:v1.37.0" {
			t.Errorf("node %s image %q, want the one given", n.Role, n.Image)
		}
	}
}

func TestNetworkCreateArgs(t *testing.T) {
	subnet := NodeSubnet(0)
	got := strings.Join(networkCreateArgs("meshbench-abc123", "abc123", subnet, 1450), " ")
	want := "network create --driver bridge --subnet 198.19.2.0/24 --gateway 198.19.2.1 --ipv6=false " +
		"--label app.kubernetes.io/managed-by=meshbench --label meshbench.io/provider=kind --label meshbench.io/run=abc123 " +
		"-o com.docker.network.driver.mtu=1450 meshbench-abc123"
	if got != want {
		t.Errorf("args\n got %s\nwant %s", got, want)
	}
	if got := strings.Join(networkCreateArgs("meshbench-abc123", "abc123", subnet, 0), " "); strings.Contains(got, "mtu") {
		t.Errorf("args without an MTU: %s", got)
	}
}

func TestPickSubnet(t *testing.T) {
	p := netip.MustParsePrefix
	tests := []struct {
		name string
		used []netip.Prefix
		want string
	}{
		{"nothing used", nil, "198.19.2.0/24"},
		{"docker's default pools", []netip.Prefix{p("172.17.0.0/16"), p("172.18.0.0/16"), p("fc00:f853:ccd:e793::/64")}, "198.19.2.0/24"},
		{"first taken", []netip.Prefix{p("198.19.2.0/24")}, "198.19.3.0/24"},
		{"a wider network over the first two", []netip.Prefix{p("198.19.2.0/23")}, "198.19.4.0/24"},
		{"all taken", []netip.Prefix{p("198.19.0.0/16")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pickSubnet(tt.used)
			if tt.want == "" {
				if err == nil || !strings.Contains(err.Error(), "meshbench down --provider kind") {
					t.Fatalf("pickSubnet = %s, %v; want the every-subnet-taken error", got, err)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Fatalf("pickSubnet = %s, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestParseSubnets(t *testing.T) {
	got := parseSubnets("172.17.0.0/16 \n198.19.2.0/24 fc00:f853:ccd:e793::/64 \n\nnot-a-prefix 198.19.3.7/24\n")
	want := []netip.Prefix{netip.MustParsePrefix("172.17.0.0/16"), netip.MustParsePrefix("198.19.2.0/24"),
		netip.MustParsePrefix("fc00:f853:ccd:e793::/64"), netip.MustParsePrefix("198.19.3.0/24")}
	if !slices.Equal(got, want) {
		t.Errorf("parseSubnets = %v, want %v", got, want)
	}
}

func TestParseNetworks(t *testing.T) {
	out := strings.Join([]string{
		"meshbench-abc123\tmeshbench\tkind\tabc123",
		"meshbench-def456\tmeshbench\tkind\tdef456",
		"someone-else\t\t\t",                        // not ours
		"meshbench-0a0a0a\tmeshbench\tkube\t0a0a0a", // another provider's
		"meshbench-evil\tmeshbench\tkind\t../x",     // a run label that is no run id
		"meshbench-111111\tsomeone\tkind\t111111",   // not managed by meshbench
		"",
	}, "\n")
	if got, want := parseNetworks(out, ""), []network{{"meshbench-abc123", "abc123"}, {"meshbench-def456", "def456"}}; !slices.Equal(got, want) {
		t.Errorf("every run: %v, want %v", got, want)
	}
	if got, want := parseNetworks(out, "def456"), []network{{"meshbench-def456", "def456"}}; !slices.Equal(got, want) {
		t.Errorf("one run: %v, want %v", got, want)
	}
	if !strings.Contains(networkFormat, `{{.Label "meshbench.io/run"}}`) || strings.Count(networkFormat, "\t") != 3 {
		t.Errorf("networkFormat %q", networkFormat)
	}
}

func TestKindLogger(t *testing.T) {
	var buf bytes.Buffer
	l := kindLogger{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	l.V(0).Infof(" • Preparing nodes %s  ...\n", "📦")
	l.V(1).Info("detail nobody asked for")
	l.Warn("WARNING: Overriding docker network due to KIND_EXPERIMENTAL_DOCKER_NETWORK")
	l.Warnf("cluster name %q is probably too long", "x")
	l.Errorf("failed to update kubeconfig: %v", "boom")
	got := buf.String()
	for _, want := range []string{
		`level=INFO msg=kind says="• Preparing nodes 📦  ..."`,
		`level=WARN msg=kind says="cluster name \"x\" is probably too long"`,
		`level=ERROR msg=kind says="failed to update kubeconfig: boom"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %s:\n%s", want, got)
		}
	}
	for _, absent := range []string{"nobody asked", "Overriding"} {
		if strings.Contains(got, absent) {
			t.Errorf("log at Info has %q:\n%s", absent, got)
		}
	}
	if l.V(1).Enabled() || !l.V(0).Enabled() {
		t.Error("V(1) enabled or V(0) disabled at Info")
	}
}

// staticBinary builds a static program named name in a test directory.
func staticBinary(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\n\nfunc main() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", bin, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestBuildImage builds the image of a static binary (named otherwise)
// and reads it back: one layer holding it as /meshbench, its entrypoint.
// A dynamically linked binary, or none, is refused.
func TestBuildImage(t *testing.T) {
	bin := staticBinary(t, "meshbench-other-name")
	out := filepath.Join(t.TempDir(), "image.tar")
	const ref = "meshbench.local/meshbench:abc123"
	if err := BuildImage(ref, bin, out); err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Config.Entrypoint, []string{"/meshbench"}) || cfg.OS != "linux" {
		t.Errorf("config: entrypoint %v, os %s", cfg.Config.Entrypoint, cfg.OS)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers (%v), want 1", len(layers), err)
	}
	if err := BuildImage(ref, "/bin/sh", filepath.Join(t.TempDir(), "x.tar")); err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Errorf("BuildImage(/bin/sh) = %v, want the dynamic-linking error", err)
	}
	if err := BuildImage(ref, "", filepath.Join(t.TempDir(), "x.tar")); err == nil || !strings.Contains(err.Error(), "no meshbench binary") {
		t.Errorf("BuildImage without a binary = %v", err)
	}
}

// fakeKube is a kube.Cluster with the few methods these tests call.
type fakeKube struct {
	kube.Cluster
	nodes     []*testbed.Node
	pods      []*testbed.Pod
	services  map[string]netip.Addr
	destroyed int
}

func (f *fakeKube) Nodes() []*testbed.Node { return f.nodes }
func (f *fakeKube) Pods() []*testbed.Pod   { return f.pods }
func (f *fakeKube) ServiceAddr(name string) (netip.Addr, bool) {
	a, ok := f.services[name]
	return a, ok
}
func (f *fakeKube) Destroy(context.Context) error { f.destroyed++; return nil }

func TestCheckAddresses(t *testing.T) {
	a := netip.MustParseAddr
	subnet := NodeSubnet(0)
	spec := testbed.Spec{Services: []testbed.ServiceSpec{{Name: "echo"}}}
	good := func() *fakeKube {
		return &fakeKube{
			nodes:    []*testbed.Node{{Name: "meshbench-abc-worker", IP: a("198.19.2.3")}},
			pods:     []*testbed.Pod{{Name: "client", IP: a("198.18.129.4")}},
			services: map[string]netip.Addr{"echo": a("198.19.64.20")},
		}
	}
	if err := checkAddresses(good(), spec, subnet); err != nil {
		t.Fatalf("addresses in the plan refused: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(*fakeKube)
		want   string
	}{
		{"node on kind's network", func(f *fakeKube) { f.nodes[0].IP = a("172.18.0.3") }, "node meshbench-abc-worker has address 172.18.0.3"},
		{"pod on kind's default", func(f *fakeKube) { f.pods[0].IP = a("10.244.1.4") }, "pod client has address 10.244.1.4"},
		{"service on kind's default", func(f *fakeKube) { f.services["echo"] = a("10.96.0.20") }, "service echo has address 10.96.0.20"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := good()
			tt.mutate(f)
			if err := checkAddresses(f, spec, subnet); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("checkAddresses = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestDestroy checks the wrapper's Destroy: the kube cluster once, however
// often it is called; with Retain the kind cluster is kept and how to
// remove it logged; without, the run's directory goes (here nothing else
// exists, so no docker command runs).
func TestDestroy(t *testing.T) {
	for _, retain := range []bool{false, true} {
		t.Run(fmt.Sprintf("retain=%v", retain), func(t *testing.T) {
			var buf bytes.Buffer
			p := NewProvider(ProviderOptions{Retain: retain, Log: slog.New(slog.NewTextHandler(&buf, nil))})
			dir := t.TempDir()
			kc := &kindCluster{runID: "abc123", name: "meshbench-abc123", nodes: 1, dir: filepath.Join(dir, "run")}
			if err := os.Mkdir(kc.dir, 0o755); err != nil {
				t.Fatal(err)
			}
			kc.kubeconfig = filepath.Join(kc.dir, "kubeconfig")
			p.kept[kc.runID] = kc
			f := &fakeKube{}
			c := &cluster{Cluster: f, p: p, kc: kc}
			for range 2 {
				if err := c.Destroy(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			if f.destroyed != 1 {
				t.Errorf("kube cluster destroyed %d times, want 1", f.destroyed)
			}
			_, err := os.Stat(filepath.Join(dir, "run"))
			if kept := err == nil; kept != retain {
				t.Errorf("run directory kept %v (%v), want %v", kept, err, retain)
			}
			if _, kept := p.kept[kc.runID]; kept != retain {
				t.Errorf("cluster kept for reuse %v, want %v", kept, retain)
			}
			if logged := strings.Contains(buf.String(), "meshbench down --provider kind --run abc123"); logged != retain {
				t.Errorf("how to remove the kept cluster logged %v, want %v:\n%s", logged, retain, buf.String())
			}
		})
	}
}

// TestCreateRefuses checks what Create refuses before it runs anything.
func TestCreateRefuses(t *testing.T) {
	p := NewProvider(ProviderOptions{})
	if p.Name() != "kind" {
		t.Errorf("Name() = %q", p.Name())
	}
	for _, tt := range []struct {
		spec testbed.Spec
		want string
	}{
		{testbed.Spec{RunID: "abc123", Nodes: 0}, "at least one node"},
		{testbed.Spec{RunID: "NOT-HEX", Nodes: 1}, "lower-case hex digits"},
	} {
		if _, err := p.Create(context.Background(), tt.spec); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Create(%+v) = %v, want an error containing %q", tt.spec, err, tt.want)
		}
	}
	if _, err := p.Down(context.Background(), "../x"); err == nil || !strings.Contains(err.Error(), "lower-case hex digits") {
		t.Errorf("Down(../x) = %v", err)
	}
}
