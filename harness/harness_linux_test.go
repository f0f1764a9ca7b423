package harness_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/meshbench/meshbench/datapaths/afxdp"
	"github.com/meshbench/meshbench/datapaths/all"
	"github.com/meshbench/meshbench/datapaths/proxy"
	"github.com/meshbench/meshbench/harness"
	"github.com/meshbench/meshbench/harness/agent"
	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed/netns"
	"github.com/meshbench/meshbench/harness/testbed/testutil"
	"github.com/meshbench/meshbench/harness/workload"
	"github.com/meshbench/meshbench/scenarios"
)

// TestMain lets this test binary serve as the workload programs the harness
// starts in pods ("echo", "load"), and fails on anything a run left behind.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && (os.Args[1] == "echo" || os.Args[1] == "load" || os.Args[1] == "proxy" || os.Args[1] == "forwarder" || os.Args[1] == "agent") {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		var err error
		switch os.Args[1] {
		case "proxy":
			err = proxy.Main(ctx, os.Args[2:], os.Stdout, os.Stderr)
		case "forwarder":
			err = afxdp.ForwarderMain(ctx, os.Args[2:], os.Stdout, os.Stderr)
		case "agent":
			err = agent.Main(ctx, os.Args[2:], os.Stdout, os.Stderr)
		default:
			err = workload.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
		}
		stop()
		if err != nil && ctx.Err() == nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(testutil.TestMainLeakCheck(m))
}

const testScenario = `
topology:
  nodes: 2
  pods_per_node: 2
  services:
    - name: echo
      replicas: 2
load:
  rates: [200]
  duration: 2s
  warmup: 1s
  connections: 4
`

func options(t testing.TB, src string) harness.Options {
	t.Helper()
	sc, err := scenarios.Parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return harness.Options{
		Scenario:       sc,
		ScenarioPath:   "test.yaml",
		ScenarioSource: []byte(src),
		OutDir:         t.TempDir(),
		Provider:       netns.New(netns.Options{}),
		NewDatapath:    all.For(sc, all.Options{}),
		Exec:           []string{exe},
		RunID:          testutil.NewRunID(t),
	}
}

func TestRunNone(t *testing.T) {
	testutil.Privileged(t)
	opts := options(t, testScenario)
	var phases []string
	opts.Progress = func(ev harness.Event) { phases = append(phases, ev.Phase) }
	run, err := harness.Run(context.Background(), opts)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if run.Status != results.StatusOK {
		t.Fatalf("status %q: %s", run.Status, run.Error)
	}
	// The file on disk is what reports read: check it, not the value.
	got, err := results.ReadFile(filepath.Join(opts.OutDir, harness.ResultsFile))
	if err != nil {
		t.Fatal(err)
	}
	if got.Calibration == nil || got.Calibration.Successes == 0 {
		t.Errorf("no calibration step: %+v", got.Calibration)
	}
	if len(got.Steps) != 1 {
		t.Fatalf("got %d steps, want 1", len(got.Steps))
	}
	s := got.Steps[0]
	if s.Datapath != "none" || s.OfferedRPS != 200 || s.Repetition != 1 {
		t.Errorf("step identity: %s %v %d", s.Datapath, s.OfferedRPS, s.Repetition)
	}
	// 200 req/s for 2 s: the open-loop client sends ~400 requests.
	if s.Requests < 300 || s.Requests > 500 {
		t.Errorf("requests = %d, want about 400", s.Requests)
	}
	if s.SuccessRatio != 1 {
		t.Errorf("success ratio %v, errors %v", s.SuccessRatio, s.Errors)
	}
	if !s.Proof.Verified || s.Proof.Counters["echo_requests"] == 0 {
		t.Errorf("proof not verified: %+v", s.Proof)
	}
	l := s.LatencyUS
	if !(l.P50 > 0 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
		t.Errorf("latency percentiles not ordered: %+v", l)
	}
	// A request/response on a kept-alive connection needs at least a
	// segment each way; the client and server each count theirs.
	if s.Cost.SegmentsPerRequest < 2 {
		t.Errorf("segments per request %v, want >= 2", s.Cost.SegmentsPerRequest)
	}
	if s.Cost.CPUMicrosPerRequest <= 0 || s.Cost.ClientCPUMicrosPerReq <= 0 {
		t.Errorf("cpu per request not measured: %+v", s.Cost)
	}
	roles := map[string]int{}
	for _, p := range s.Processes {
		roles[p.Role]++
		if p.Role == results.RoleServer && (p.RSSBytes == 0 || p.PSSBytes == 0) {
			t.Errorf("process %s in %s: no memory figures", p.Name, p.Pod)
		}
	}
	if roles[results.RoleServer] != 4 || roles[results.RoleClient] != 1 {
		t.Errorf("processes by role %v, want 4 servers and 1 client", roles)
	}
	if len(got.Summaries) != 1 || got.Summaries[0].P50US.Median != l.P50 {
		t.Errorf("summaries: %+v", got.Summaries)
	}
	if got.Environment.Kernel == "" || got.Environment.Cores == 0 {
		t.Errorf("environment not recorded: %+v", got.Environment)
	}
	if len(phases) == 0 || phases[len(phases)-1] != "done" {
		t.Errorf("progress phases %v", phases)
	}
}

func TestRunFailureMidRun(t *testing.T) {
	testutil.Privileged(t)
	opts := options(t, testScenario+"repetitions: 2\n")
	injected := errors.New("injected failure")
	opts.AfterStep = func(ctx context.Context, s *results.Step) error {
		// The cluster and its processes exist now: fail with them up.
		return injected
	}
	run, err := harness.Run(context.Background(), opts)
	if !errors.Is(err, injected) {
		t.Fatalf("err = %v, want the injected failure", err)
	}
	if run.Status != results.StatusFailed {
		t.Errorf("status %q, want failed", run.Status)
	}
	got, err := results.ReadFile(filepath.Join(opts.OutDir, harness.ResultsFile))
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != results.StatusFailed || len(got.Steps) != 1 {
		t.Errorf("results file: status %q, %d steps", got.Status, len(got.Steps))
	}
	// testutil.NewRunID's cleanup checks that nothing is left.
}

func TestRunInterrupted(t *testing.T) {
	testutil.Privileged(t)
	opts := options(t, `
topology: {nodes: 2, pods_per_node: 2}
load: {rates: [200], duration: 20s, warmup: 1s}
`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts.Progress = func(ev harness.Event) {
		if ev.Phase == "load" {
			time.AfterFunc(3*time.Second, cancel)
		}
	}
	start := time.Now()
	run, err := harness.Run(ctx, opts)
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want cancellation", err)
	}
	if el := time.Since(start); el > 15*time.Second {
		t.Errorf("run took %s after a cancel at about 4s: the load was not stopped", el)
	}
	got, rerr := results.ReadFile(filepath.Join(opts.OutDir, harness.ResultsFile))
	if rerr != nil {
		t.Fatal(rerr)
	}
	if got.Status != results.StatusInterrupted || run.Status != results.StatusInterrupted {
		t.Errorf("status %q, want interrupted", got.Status)
	}
	if len(got.Steps) != 1 || !got.Steps[0].Interrupted || got.Steps[0].Successes == 0 {
		t.Fatalf("want one interrupted step with what was measured, got %+v", got.Steps)
	}
}

func TestRunSidecar(t *testing.T) {
	testutil.Privileged(t)
	if _, err := exec.LookPath("iptables-restore"); err != nil {
		t.Skip("iptables-restore not installed (apt-get install iptables)")
	}
	opts := options(t, testScenario+"datapaths: [none, sidecar]\n")
	run, err := harness.Run(context.Background(), opts)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if len(run.Steps) != 2 {
		t.Fatalf("got %d steps, want 2", len(run.Steps))
	}
	s := run.Steps[1]
	if s.Datapath != "sidecar" || !s.Proof.Verified || s.SuccessRatio != 1 {
		t.Fatalf("sidecar step: datapath %s, proof %+v, success %v", s.Datapath, s.Proof, s.SuccessRatio)
	}
	// The counters are read at the window's edges, so requests in flight
	// there may land on either side.
	if s.Proof.Counters["client_outbound_rq"] < s.Successes*95/100 {
		t.Errorf("client sidecar proxied %d requests, fewer than %d successes", s.Proof.Counters["client_outbound_rq"], s.Successes)
	}
	proxies := 0
	for _, p := range s.Processes {
		if p.Role == results.RoleDatapath {
			proxies++
		}
	}
	if proxies != 4 {
		t.Errorf("%d sidecar processes measured, want one per pod (4)", proxies)
	}
	// Two proxy hops add TCP segments: the sidecar path costs more than none.
	if s.Cost.SegmentsPerRequest <= run.Steps[0].Cost.SegmentsPerRequest {
		t.Errorf("sidecar %.1f segments/request, none %.1f: want more through proxies",
			s.Cost.SegmentsPerRequest, run.Steps[0].Cost.SegmentsPerRequest)
	}
}

func TestRunSockmap(t *testing.T) {
	testutil.Privileged(t)
	links := testutil.BPFLinks(t)
	defer testutil.CheckNoNewLinks(t, links)
	if _, err := exec.LookPath("iptables-restore"); err != nil {
		t.Skip("iptables-restore not installed (apt-get install iptables)")
	}
	opts := options(t, testScenario+"datapaths: [sockmap]\n")
	run, err := harness.Run(context.Background(), opts)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	s := run.Steps[0]
	if !s.Proof.Verified || s.SuccessRatio != 1 {
		t.Fatalf("sockmap step: proof %+v, success %v", s.Proof, s.SuccessRatio)
	}
	if s.Proof.Counters["sockmap_redirects"] < s.Successes*95/100 {
		t.Errorf("sk_msg redirected %d messages for %d requests", s.Proof.Counters["sockmap_redirects"], s.Successes)
	}
}

func TestRunNodeProxy(t *testing.T) {
	testutil.Privileged(t)
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("iptables not installed (apt-get install iptables)")
	}
	for _, hops := range []string{"both", "source"} {
		t.Run(hops, func(t *testing.T) {
			links := testutil.BPFLinks(t)
			defer testutil.CheckNoNewLinks(t, links)
			opts := options(t, testScenario+"datapaths: [nodeproxy]\nnodeproxy: {hops: "+hops+"}\n")
			run, err := harness.Run(context.Background(), opts)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			s := run.Steps[0]
			if !s.Proof.Verified || s.SuccessRatio != 1 {
				t.Fatalf("nodeproxy step: proof %+v, success %v", s.Proof, s.SuccessRatio)
			}
			in := s.Proof.Counters["inbound_rq"]
			if hops == "both" && in < s.Successes*95/100 {
				t.Errorf("both hops: destination proxies received %d of %d requests", in, s.Successes)
			}
			if hops == "source" && in != 0 {
				t.Errorf("source hop only: destination proxies received %d requests", in)
			}
			proxies := 0
			for _, p := range s.Processes {
				if p.Role == results.RoleDatapath {
					proxies++
				}
			}
			if proxies != 2 {
				t.Errorf("%d proxy processes, want one per node (2)", proxies)
			}
		})
	}
}

// A pod-kill during the load: the fault is recorded with its errors and
// recovery, the pod is restarted, and the run still ends cleanly.
func TestRunChaosPodKill(t *testing.T) {
	testutil.Privileged(t)
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("iptables not installed (apt-get install iptables)")
	}
	opts := options(t, `
topology:
  nodes: 2
  pods_per_node: 2
  services: [{name: echo, replicas: 2}]
datapaths: [none, sidecar]
load: {rates: [200], duration: 6s, warmup: 1s, connections: 4}
chaos:
  - {name: kill-one, at: 2s, duration: 1s, fault: pod-kill, selector: {pods: [n1-p0]}}
`)
	run, err := harness.Run(context.Background(), opts)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, s := range run.Steps {
		if len(s.Faults) != 1 {
			t.Fatalf("%s: %d fault records, want 1", s.Datapath, len(s.Faults))
		}
		f := s.Faults[0]
		if f.Error != "" || f.StartS < 1.9 || f.EndS < f.StartS+0.9 {
			t.Errorf("%s: fault record %+v", s.Datapath, f)
		}
		// Without a mesh the client keeps sending to the dead pod.
		if s.Datapath == "none" && (f.Errors == 0 || f.DetectS < 0) {
			t.Errorf("none: pod-kill caused no errors: %+v", f)
		}
		if f.Errors > 0 && f.RecoverS < 0 {
			t.Errorf("%s: never recovered after pod-kill: %+v; windows %+v", s.Datapath, f, s.Windows)
		}
		// The restarted pod serves again: the last window is clean.
		if w := s.Windows[len(s.Windows)-1]; w.SuccessRatio < 0.99 {
			t.Errorf("%s: last window success %.2f", s.Datapath, w.SuccessRatio)
		}
	}
	if m := run.Steps[1].DatapathMetrics["xds_endpoint_push_to_ack_us"]; m <= 0 {
		t.Errorf("sidecar: endpoint change not pushed to the proxies (metrics %v)", run.Steps[1].DatapathMetrics)
	}
}

// TestRunHAProxyEngine runs HAProxy in the proxy seats: sockmap (the
// sidecar's seat, plus the BPF) with the services' mesh.engine haproxy,
// and nodeproxy labelled with the haproxy engine (nodeproxy/haproxy), each
// proxy an haproxy configured by the control plane through its xDS
// client, with every proof verified from haproxy's own counters.
func TestRunHAProxyEngine(t *testing.T) {
	testutil.Privileged(t)
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Fatal("haproxy missing: `make test` installs it (ci/install-deps.sh test)")
	}
	links := testutil.BPFLinks(t)
	opts := options(t, `
topology:
  nodes: 2
  pods_per_node: 2
  services:
    - name: echo
      replicas: 2
      mesh: {engine: haproxy}
load:
  rates: [200]
  duration: 2s
  warmup: 1s
  connections: 4
datapaths: [sockmap, nodeproxy/haproxy]
`)
	run, err := harness.Run(context.Background(), opts)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if len(run.Steps) != 2 {
		t.Fatalf("got %d steps, want 2", len(run.Steps))
	}
	for i, want := range []string{"sockmap", "nodeproxy/haproxy"} {
		if run.Steps[i].Datapath != want {
			t.Errorf("step %d: datapath %q, want %q", i, run.Steps[i].Datapath, want)
		}
	}
	for _, s := range run.Steps {
		t.Logf("%s: %d requests, p50 %.0f µs, p99 %.0f µs, CPU %.0f µs/req, proof %v: %s",
			s.Datapath, s.Requests, s.LatencyUS.P50, s.LatencyUS.P99, s.Cost.CPUMicrosPerRequest, s.Proof.Verified, s.Proof.Detail)
		if !s.Proof.Verified || s.SuccessRatio != 1 {
			t.Errorf("%s with haproxy: proof %+v, success %v", s.Datapath, s.Proof, s.SuccessRatio)
		}
		if s.DatapathMetrics["proxies_haproxy"] == 0 {
			t.Errorf("%s: metrics %v: no haproxy proxies", s.Datapath, s.DatapathMetrics)
		}
		// The engines' own figures reach the results: no restart, and
		// the runtime API's apply time (none here: no endpoint changed).
		if r, ok := s.DatapathMetrics["haproxy_restarts"]; !ok || r != 0 {
			t.Errorf("%s: metrics %v: want haproxy_restarts 0", s.Datapath, s.DatapathMetrics)
		}
		if _, ok := s.DatapathMetrics["haproxy_runtime_apply_us"]; !ok {
			t.Errorf("%s: metrics %v: no haproxy_runtime_apply_us", s.Datapath, s.DatapathMetrics)
		}
	}
	testutil.CheckNoNewLinks(t, links)
	if out, _ := exec.Command("pgrep", "-x", "haproxy").Output(); len(out) > 0 {
		t.Errorf("haproxy processes left after the run: %s", out)
	}
}
