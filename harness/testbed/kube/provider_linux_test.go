package kube

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed/testutil"
	"github.com/meshbench/meshbench/internal/kubeenv"
)

const providerScenario = `
topology:
  nodes: 2
  pods_per_node: 2
  services:
    - name: echo
      replicas: 3
load:
  rates: [200]
  duration: 2s
  warmup: 1s
  connections: 4
datapaths: [none, sidecar, nodeproxy]
`

// TestKubeProvider runs `meshbench bench --provider kube` end to end on
// two real Kubernetes nodes (the echo replicas on both, the client on
// node-0, so requests cross nodes and stay on one): the pods are
// Deployments of the meshbench image built in-process, the agent
// DaemonSet is reached by port-forward, the echo servers and the load
// client start in the pods through it, the client sends to the Service's
// ClusterIP (kube-proxy balances), and the counters and metrics are read
// through the agents. Then sidecar: a sidecar per pod (its iptables rules
// put into the pod through the agent, started in the pod as uid 1337,
// reaching the xDS server over a socket each agent exposes on its node).
// Then nodeproxy: a proxy per node, started by the agent in its own pod
// (hostNetwork, as a per-node proxy DaemonSet runs), connect4 steering the
// pods' connects to the node's address and getsockopt answering the
// proxy's SO_ORIGINAL_DST, both loaded by each node's agent, and the
// destination node's proxy capturing what arrives on its uplink for its
// pods (both hops). Every proof must be verified and the host left as it
// was. (sockmap, and nodeproxy on one node, run in TestKubeChaos.)
func TestKubeProvider(t *testing.T) {
	realNodePrivileged(t)
	meshTar, meshbench := buildMeshbenchBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cp, runID := startRealNodes(t, ctx, 2, meshTar)
	doc, err := exec.CommandContext(ctx, meshbench, "doctor", "--provider", "kube", "--kubeconfig", cp.KubeconfigPath()).CombinedOutput()
	t.Logf("meshbench doctor --provider kube:\n%s", doc)
	if err != nil || !strings.Contains(string(doc), "2 of 2 can run the run's pods") {
		t.Errorf("doctor --provider kube: %v", err)
	}
	links := testutil.BPFLinks(t)
	run := benchOnKube(t, ctx, meshbench, cp.KubeconfigPath(), runID, providerScenario, "")
	if run.Status != results.StatusOK || len(run.Steps) != 3 {
		t.Fatalf("status %q (%s), %d steps", run.Status, run.Error, len(run.Steps))
	}
	for _, s := range run.Steps {
		t.Logf("%s on kube: %d requests, success %.3f, p50 %.0f µs, p99 %.0f µs, CPU %.1f µs/request, proof verified %v (%d checks)",
			s.Datapath, s.Requests, s.SuccessRatio, s.LatencyUS.P50, s.LatencyUS.P99, s.Cost.CPUMicrosPerRequest, s.Proof.Verified, len(s.Proof.Checks))
		for _, c := range s.Proof.Checks {
			t.Logf("  proof: %s: %s (want %s) ok=%v", c.Name, c.Figure, c.Want, c.OK)
		}
		if !s.Proof.Verified || s.SuccessRatio != 1 {
			t.Fatalf("%s: proof %+v, success %v", s.Datapath, s.Proof, s.SuccessRatio)
		}
		if s.Cost.CPUMicrosPerRequest <= 0 || s.Cost.SegmentsPerRequest < 2 {
			t.Errorf("%s: cost not measured through the agents: %+v", s.Datapath, s.Cost)
		}
		for _, p := range s.Processes {
			t.Logf("  %s %s in %s: %.3f s CPU, RSS %d KiB, %d descendants", p.Role, p.Name, p.Pod, p.CPUSeconds, p.RSSBytes>>10, len(p.Descendants))
			if p.RSSBytes == 0 {
				t.Errorf("%s: process %s in %s: no memory figures", s.Datapath, p.Name, p.Pod)
			}
		}
	}
	s := run.Steps[0]
	for _, st := range run.Steps[1:2] {
		proxies := 0
		for _, p := range st.Processes {
			if p.Role == results.RoleDatapath {
				proxies++
			}
		}
		if proxies != 4 {
			t.Errorf("%s: %d sidecars measured, want one per pod (4)", st.Datapath, proxies)
		}
	}
	// nodeproxy's BPF was loaded on each node (by its agent); the
	// sidecar's iptables rules need none.
	if fp := run.Steps[2].Footprint; fp == nil || fp.BPFCopies != 2 || fp.BPFBytes <= 0 {
		t.Errorf("nodeproxy footprint %+v: want each node's BPF (2)", fp)
	}
	if fp := run.Steps[1].Footprint; fp != nil && fp.BPFCopies != 0 {
		t.Errorf("sidecar footprint %+v: want no BPF", fp)
	}
	// The node proxies ran in the agents' pods and were measured there;
	// node-1's received the cross-node requests on its inbound listener
	// (the proof holds that to what node-0's sent there).
	nodeProxies := map[string]results.Process{}
	for _, p := range run.Steps[2].Processes {
		if p.Role == results.RoleDatapath && p.RSSBytes > 0 {
			nodeProxies[p.Node] = p
		}
	}
	if _, ok := nodeProxies["node-0"]; !ok || len(nodeProxies) != 2 {
		t.Errorf("nodeproxy: datapath processes %+v, want a node proxy measured on node-0 and node-1", nodeProxies)
	}
	if c := run.Steps[2].Proof.Counters; c["hop_received_2xx/node-1"] <= 0 || c["client_sent_local_2xx"] != 0 && c["hop_sent_2xx/node-1"] <= 0 {
		t.Errorf("nodeproxy: node-1's proxy received %d inbound: want the cross-node share", c["hop_received_2xx/node-1"])
	}
	// The real no-mesh baseline: the cluster's Service path.
	if !strings.Contains(s.Proof.Source, "Service's cluster address 198.19.") {
		t.Errorf("proof source %q: want the Service's cluster address", s.Proof.Source)
	}
	if run.Environment.Provider != "kube" {
		t.Errorf("environment provider %q, want kube", run.Environment.Provider)
	}
	// The cluster is described: the kubeenv node runs kube-proxy in
	// iptables mode (its CNI configuration is in the node's private
	// directory, not /etc/cni/net.d, so it is not seen).
	cl := run.Environment.Cluster
	if cl == nil || cl.KubernetesVersion != kubeenv.KubernetesVersion || len(cl.Nodes) != 2 ||
		cl.Nodes[1].KubeProxyMode != "iptables" || cl.Nodes[1].CPUs < 1 || cl.Nodes[1].Kubelet == "" {
		t.Errorf("environment cluster %+v: want version %s, two nodes with kube-proxy in iptables mode", cl, kubeenv.KubernetesVersion)
	} else {
		t.Logf("cluster: %+v", *cl)
	}
	// The agents' BPF links went with the run.
	testutil.CheckNoNewLinks(t, links)
	// The run's namespace is gone.
	if _, err := cp.Client().CoreV1().Namespaces().Get(ctx, NamespaceName(runID), metav1.GetOptions{}); err == nil {
		t.Errorf("namespace %s left after the run", NamespaceName(runID))
	}
}

const chaosScenario = `
topology:
  nodes: 1
  pods_per_node: 3
  services:
    - name: echo
      replicas: 2
load:
  rates: [200]
  duration: 8s
  warmup: 1s
  connections: 4
datapaths: [sockmap, nodeproxy]
chaos:
  - name: slow-replica
    at: 500ms
    duration: 1500ms
    fault: delay
    selector: {pods: [n0-p1]}
    direction: to
    delay: {latency: 20ms}
  - name: kill-replica
    at: 2500ms
    duration: 2s
    fault: pod-kill
    selector: {pods: [n0-p1]}
  - name: thin-replica
    at: 3500ms
    duration: 1500ms
    fault: bandwidth
    selector: {pods: [n0-p2]}
    direction: to
    bandwidth: {rate: 16kbps}
  - name: lossy-replica
    at: 5500ms
    duration: 1500ms
    fault: loss
    selector: {pods: [n0-p2]}
    direction: from
    loss: {loss: "20"}
`

// TestKubeChaos runs the sockmap (a sidecar per pod, plus the node's BPF)
// and nodeproxy datapaths with chaos on a real node: the faults act
// through the node's agent. pod-kill
// deletes the replica's pod, as Chaos Mesh does: its Deployment replaces
// it, the datapath's per-pod part (rules and sidecar, the node's BPF
// attachment, the endpoints' new address) and the workload follow the
// replacement, and the kubelet's probe puts it back through the
// EndpointSlices; bandwidth puts a tbf qdisc on the pod's interface with
// the node's tc, in the pod's namespace; delay sends the pod's packets to
// an NFQUEUE read by a delay-queue process the agent starts in the pod;
// loss is an iptables statistic rule there (tc-bpf, which loads its
// program in the harness, gives way to iptables on agents).
func TestKubeChaos(t *testing.T) {
	realNodePrivileged(t)
	meshTar, meshbench := buildMeshbenchBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cp, runID := startRealNode(t, ctx, meshTar)
	run := benchOnKube(t, ctx, meshbench, cp.KubeconfigPath(), runID, chaosScenario, "")
	if run.Status != results.StatusOK || len(run.Steps) != 2 {
		t.Fatalf("status %q (%s), %d steps", run.Status, run.Error, len(run.Steps))
	}
	want := map[string]string{"kill-replica": "pod-delete", "thin-replica": "tbf", "slow-replica": "nfqueue", "lossy-replica": "iptables-statistic"}
	for _, s := range run.Steps {
		t.Logf("%s with chaos on kube: %d requests, success %.3f, proof verified %v (inconclusive %v): %s", s.Datapath, s.Requests, s.SuccessRatio, s.Proof.Verified, s.Proof.Inconclusive, s.Proof.Detail)
		checkChaosProof(t, s)
		if len(s.Faults) != len(want) {
			t.Fatalf("%s: %d fault records, want %d: %+v", s.Datapath, len(s.Faults), len(want), s.Faults)
		}
		for _, f := range s.Faults {
			t.Logf("%s: fault %s (%s): %.2f–%.2f s, %d errors, detect %.2f s, recover %.2f s, activity %+v, error %q",
				s.Datapath, f.Name, f.Implementation, f.StartS, f.EndS, f.Errors, f.DetectS, f.RecoverS, f.Activity, f.Error)
			if f.Implementation != want[f.Name] {
				t.Errorf("%s: fault %s: implementation %q, want %q", s.Datapath, f.Name, f.Implementation, want[f.Name])
			}
			if f.Error != "" || f.EndS < 0 {
				t.Errorf("%s: fault %s: error %q, ended at %.2f s", s.Datapath, f.Name, f.Error, f.EndS)
			}
			if f.Activity == nil || !f.Activity.Active {
				t.Errorf("%s: fault %s did not act: %+v", s.Datapath, f.Name, f.Activity)
			}
			if f.Name != "kill-replica" || f.Activity == nil {
				continue
			}
			// The pod was deleted with the processes the harness started
			// in it (the workload, and the sidecar where there is one),
			// and its replacement ran and served.
			c := f.Activity.Counters
			procs := int64(2) // echo and sidecar
			if s.Datapath == "nodeproxy" {
				procs = 1
			}
			if c["deleted_pods"] != 1 || c["killed"] != procs || c["replacement_serving_ms"] <= 0 || !strings.Contains(f.Activity.Detail, "replacement n0-p1-") {
				t.Errorf("%s: kill-replica activity %+v: want 1 pod deleted with its %d processes, and its replacement serving", s.Datapath, f.Activity, procs)
			}
			// The kubelet's probe took the replica out of the Service's
			// endpoints (the EndpointSlice controller dropped the deleted
			// pod) and put the replacement in once its workload served;
			// the harness followed the EndpointSlices and pushed both
			// changes to the proxies over xDS.
			r := f.Readiness
			if r == nil || !strings.Contains(r.Source, "kubelet") || r.NotReadyS <= 0 || r.NotReadyS > 2 || r.ReadyS < 0 || r.ReadyS > 3 {
				t.Errorf("%s: kill-replica readiness %+v: want the kubelet's, not ready within 2 s of the delete, ready within 3 s of the workload's start", s.Datapath, r)
			} else {
				t.Logf("%s: kill-replica: %s: not ready %.2f s after the delete, ready %.2f s after the workload started in the replacement", s.Datapath, r.Source, r.NotReadyS, r.ReadyS)
			}
		}
	}
}

// checkChaosProof checks a chaos step's proof: verified, or, where the
// deleted pod's sidecar was one of the counted hops (it died with its pod
// and its replacement counts from zero), inconclusive with the warm-up's
// proof verified and only that pod's hop failing.
func checkChaosProof(t *testing.T, s results.Step) {
	t.Helper()
	p := s.Proof
	if p.Verified {
		return
	}
	if !p.Inconclusive || p.Warmup == nil || !p.Warmup.Verified {
		t.Errorf("%s: proof neither verified nor inconclusive with a verified warm-up: %+v", s.Datapath, p)
		return
	}
	for _, c := range p.Checks {
		if !c.OK && (!strings.Contains(c.Detail, "n0-p1 ") || strings.Contains(c.Detail, "n0-p2")) {
			t.Errorf("%s: check %q failed on more than the deleted pod's hop: %s", s.Datapath, c.Name, c.Detail)
		}
	}
}

// benchOnKube runs `meshbench bench --provider kube` on scenario (YAML)
// with the image the node has imported, writing into out ("": a temporary
// directory), and returns its results.
func benchOnKube(t *testing.T, ctx context.Context, meshbench, kubeconfig, runID, scenario, out string) *results.Run {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "scenario.yaml")
	if err := os.WriteFile(path, []byte(scenario), 0o644); err != nil {
		t.Fatal(err)
	}
	if out == "" {
		out = filepath.Join(dir, "out")
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, meshbench, "bench", path, "-v", "--provider", "kube", "--kubeconfig", kubeconfig,
		"--image", meshbenchImage, "--image-pull", "Never", "--run-id", runID, "--out", out)
	output, err := cmd.CombinedOutput()
	t.Logf("meshbench bench --provider kube (%s):\n%s", time.Since(start).Round(time.Millisecond), output)
	if err != nil {
		t.Fatalf("meshbench bench: %v", err)
	}
	run, err := results.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	return run
}

// TestKubeBench runs scenarios/kube-node.yaml on a real node, when
// MESHBENCH_KUBE_BENCH is set (a benchmark of several minutes, not a
// test: it checks only that every proof held). Its results and report go
// to MESHBENCH_KUBE_BENCH_OUT when set, and each step is logged.
func TestKubeBench(t *testing.T) {
	if os.Getenv("MESHBENCH_KUBE_BENCH") == "" {
		t.Skip("a benchmark: set MESHBENCH_KUBE_BENCH=1 to run scenarios/kube-node.yaml on a real node")
	}
	realNodePrivileged(t)
	scenario, err := os.ReadFile("../../../scenarios/kube-node.yaml")
	if err != nil {
		t.Fatal(err)
	}
	meshTar, meshbench := buildMeshbenchBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cp, runID := startRealNode(t, ctx, meshTar)
	run := benchOnKube(t, ctx, meshbench, cp.KubeconfigPath(), runID, string(scenario), os.Getenv("MESHBENCH_KUBE_BENCH_OUT"))
	for _, s := range run.Steps {
		t.Logf("%-9s rep %d: %d requests, success %.3f, p50 %.0f µs, p90 %.0f, p99 %.0f, CPU %.0f µs/request, proof verified %v",
			s.Datapath, s.Repetition, s.Requests, s.SuccessRatio, s.LatencyUS.P50, s.LatencyUS.P90, s.LatencyUS.P99, s.Cost.CPUMicrosPerRequest, s.Proof.Verified)
		if !s.Proof.Verified {
			t.Errorf("%s rep %d: proof %+v", s.Datapath, s.Repetition, s.Proof)
		}
	}
}
