package kind

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	kindcluster "sigs.k8s.io/kind/pkg/cluster"

	"github.com/meshbench/meshbench/harness/results"
)

const e2eScenario = `
topology:
  nodes: 1
  pods_per_node: 3
  services:
    - name: echo
      replicas: 2
load:
  rates: [100]
  duration: 2s
  warmup: 1s
  connections: 2
datapaths: [none]
`

// TestKindProvider runs `meshbench bench --provider kind` end to end: a
// one-node kind cluster on the run's docker network, the meshbench image
// built in-process and loaded into the node, the none datapath through
// the cluster's Service, and then nothing left (no kind cluster, docker
// network or directory of the run). A second run with --retain keeps the
// cluster, whose node must sit in the address plan, and `meshbench down
// --provider kind` removes it. It needs root and a Docker engine that can
// run privileged containers, and skips, saying so, without them (the
// development machines have a docker client but no such engine).
func TestKindProvider(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (Docker's socket, and a run as the command line does it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	meshbench := dockerPrivileged(t, ctx)
	runID := randomRunID(t)
	name, _ := ClusterName(runID)
	t.Cleanup(func() {
		// Whatever the test did, leave nothing; what is found here was
		// already reported by the checks below.
		removed, err := NewProvider(ProviderOptions{}).Down(context.Background(), runID)
		if len(removed) > 0 || err != nil {
			t.Logf("cleanup removed %v (%v)", removed, err)
		}
	})
	dir := t.TempDir()
	scenario := filepath.Join(dir, "scenario.yaml")
	if err := os.WriteFile(scenario, []byte(e2eScenario), 0o644); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(dir, "out")
	runMeshbench(t, ctx, meshbench, "bench", scenario, "-v", "--provider", "kind", "--run-id", runID, "--out", out)
	run, err := results.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if run.Status != results.StatusOK || len(run.Steps) != 1 {
		t.Fatalf("status %q (%s), %d steps", run.Status, run.Error, len(run.Steps))
	}
	s := run.Steps[0]
	t.Logf("none on kind: %d requests, success %.3f, p50 %.0f µs, p99 %.0f µs, proof %v (%s)",
		s.Requests, s.SuccessRatio, s.LatencyUS.P50, s.LatencyUS.P99, s.Proof.Verified, s.Proof.Source)
	if !s.Proof.Verified || s.SuccessRatio != 1 || s.Requests == 0 {
		t.Errorf("proof %+v, success %v, %d requests", s.Proof, s.SuccessRatio, s.Requests)
	}
	if !strings.Contains(s.Proof.Source, "Service's cluster address 198.19.") {
		t.Errorf("proof source %q: want the Service's address, in %s", s.Proof.Source, ServiceSubnet)
	}
	if run.Environment.Provider != "kind" {
		t.Errorf("environment provider %q, want kind", run.Environment.Provider)
	}
	cl := run.Environment.Cluster
	if cl == nil || len(cl.Nodes) != 1 || cl.Nodes[0].Name != name+"-control-plane" || cl.Nodes[0].KubeProxyMode != "iptables" {
		t.Errorf("environment cluster %+v: want one node %s-control-plane, kube-proxy in iptables mode", cl, name)
	}
	checkGone(t, ctx, runID)

	// --retain: the cluster stays, on the plan's addresses, until down.
	out = filepath.Join(dir, "out-retain")
	runMeshbench(t, ctx, meshbench, "bench", scenario, "--provider", "kind", "--retain", "--run-id", runID, "--out", out)
	clusters, err := kindcluster.NewProvider(kindcluster.ProviderWithDocker()).List()
	if err != nil || !slices.Contains(clusters, name) {
		t.Errorf("after --retain: clusters %v (%v), want %s kept", clusters, err, name)
	}
	nets, err := listNetworks(ctx, runID)
	if err != nil || len(nets) != 1 || nets[0].Name != name {
		t.Errorf("after --retain: networks %v (%v), want %s", nets, err, name)
	}
	ip, err := docker(ctx, "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name+"-control-plane")
	if a, perr := netip.ParseAddr(strings.TrimSpace(ip)); err != nil || perr != nil || !NodeSubnets.Contains(a) {
		t.Errorf("kept node's address %q (%v, %v): want one in %s", ip, err, perr, NodeSubnets)
	}
	down := runMeshbench(t, ctx, meshbench, "down", "--provider", "kind", "--run", runID)
	for _, want := range []string{"removed kind cluster " + name, "removed docker network " + name} {
		if !strings.Contains(down, want) {
			t.Errorf("meshbench down: no %q in\n%s", want, down)
		}
	}
	checkGone(t, ctx, runID)
}

// runMeshbench runs meshbench with args and returns its output; it fails the
// test when meshbench fails.
func runMeshbench(t *testing.T, ctx context.Context, meshbench string, args ...string) string {
	t.Helper()
	start := time.Now()
	out, err := exec.CommandContext(ctx, meshbench, args...).CombinedOutput()
	t.Logf("meshbench %s (%s):\n%s", strings.Join(args, " "), time.Since(start).Round(time.Millisecond), out)
	if err != nil {
		t.Fatalf("meshbench %s: %v", args[0], err)
	}
	return string(out)
}

// checkGone fails unless the run's kind cluster, docker network and
// directories are all gone.
func checkGone(t *testing.T, ctx context.Context, runID string) {
	t.Helper()
	name, _ := ClusterName(runID)
	clusters, err := kindcluster.NewProvider(kindcluster.ProviderWithDocker()).List()
	if err != nil || slices.Contains(clusters, name) {
		t.Errorf("kind clusters %v (%v): %s left", clusters, err, name)
	}
	nets, err := listNetworks(ctx, runID)
	if err != nil || len(nets) > 0 {
		t.Errorf("docker networks of the run left: %v (%v)", nets, err)
	}
	if dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), tempPattern(runID)+"*")); len(dirs) > 0 {
		t.Errorf("directories of the run left: %v", dirs)
	}
}

// dockerPrivileged skips the test unless a Docker engine answers and can
// start a privileged container, as kind's nodes are; it returns meshbench
// built statically, with meshbench-kube beside it. The probe container
// runs that meshbench from an image built in-process and loaded with
// `docker load`: nothing is pulled.
func dockerPrivileged(t *testing.T, ctx context.Context) string {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("no docker command: the kind provider's nodes are Docker containers")
	}
	if _, err := docker(ctx, "info", "--format", "{{.ServerVersion}}"); err != nil {
		t.Skipf("no Docker engine answers (%v): the kind provider's nodes are privileged Docker containers", err)
	}
	meshbench := buildMeshbench(t)
	ref := "meshbench.local/privileged-probe:" + randomRunID(t)
	tar := filepath.Join(t.TempDir(), "probe.tar")
	if err := BuildImage(ref, meshbench, tar); err != nil {
		t.Fatal(err)
	}
	if _, err := docker(ctx, "load", "--input", tar); err != nil {
		t.Fatalf("docker load of the probe image: %v", err)
	}
	t.Cleanup(func() { docker(context.Background(), "image", "rm", "--force", ref) })
	if _, err := docker(ctx, "run", "--rm", "--privileged", "--network", "none", ref, "version"); err != nil {
		t.Skipf("the Docker engine cannot run a privileged container (%v): kind's nodes are privileged containers", err)
	}
	return meshbench
}

// buildMeshbench builds cmd/meshbench statically, with meshbench-kube
// beside it (meshbench hands --provider kind to it).
func buildMeshbench(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	start := time.Now()
	cmd := exec.Command("go", "build", "-trimpath", "-o", dir+"/", "../../../cmd/meshbench", "../../../cmd/meshbench-kube")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build meshbench: %v\n%s", err, out)
	}
	t.Logf("static meshbench and meshbench-kube built in %s", time.Since(start).Round(time.Millisecond))
	return filepath.Join(dir, "meshbench")
}

func randomRunID(t *testing.T) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}
