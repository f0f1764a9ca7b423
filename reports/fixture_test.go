package reports

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshbench/meshbench/harness/results"
)

// The fixture testdata/run.json is TEST DATA, made by makeFixture below
// (go test ./reports -run TestFixture -write-fixture): two datapaths (none,
// sidecar), two rates, three repetitions, with histograms, windows,
// processes, proof counters and a calibration step, with magnitudes like
// those measured on the project's machines. It is not a measurement.

var writeFixture = flag.Bool("write-fixture", false, "rewrite testdata/run.json from makeFixture")

const fixturePath = "testdata/run.json"

// fixtureShape is one datapath × rate of the fixture.
type fixtureShape struct {
	dp              string
	rate            float64
	p50, p99        float64 // µs
	cpu, segs, ctx  float64 // per request
	clientCPU       float64
	serverCPU       float64
	datapathCPU     float64
	proxyRSS        int64 // per sidecar, bytes
	proofSource     string
	proofCounterKey []string
}

// lognormal returns n latencies (µs) whose median is p50 and 99th
// percentile is p99, deterministically (inverse CDF at evenly spaced
// quantiles), plus a short tail of slower requests.
func lognormal(n int, p50, p99 float64) []float64 {
	sigma := math.Log(p99/p50) / 2.326
	out := make([]float64, n)
	for i := range n {
		q := (float64(i) + 0.5) / float64(n)
		z := math.Sqrt2 * math.Erfinv(2*q-1)
		out[i] = p50 * math.Exp(sigma*z)
	}
	// The slowest 0.05% take up to 6× p99 (scheduler hiccups).
	tail := max(1, n/2000)
	for i := range tail {
		out[n-1-i] = p99 * (2 + 4*float64(tail-i)/float64(tail))
	}
	return out
}

// roundUp2 rounds v up to two significant digits, like an HDR histogram
// bucket with two significant figures.
func roundUp2(v float64) int64 {
	if v < 1 {
		return 1
	}
	e := math.Pow(10, math.Floor(math.Log10(v))-1)
	return int64(math.Ceil(v/e-1e-9) * e)
}

func histogramOf(lat []float64) (results.Histogram, results.Latency) {
	counts := map[int64]int64{}
	var sum float64
	for _, v := range lat {
		counts[roundUp2(v)]++
		sum += v
	}
	h := results.Histogram{SignificantFigures: 2}
	for _, le := range sortedKeys(counts) {
		h.Buckets = append(h.Buckets, results.Bucket{UpperUS: le, Count: counts[le]})
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return math.Round(s[max(i, 0)]*10) / 10
	}
	return h, results.Latency{
		Mean: math.Round(sum/float64(len(s))*10) / 10,
		P50:  at(0.5), P90: at(0.9), P99: at(0.99), P999: at(0.999), Max: at(1),
	}
}

func makeFixture() *results.Run {
	started := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	run := &results.Run{
		Schema:   results.Schema,
		ID:       "test-fixture-0001",
		Status:   results.StatusOK,
		Started:  started,
		Finished: started.Add(7 * time.Minute),
		Environment: results.Environment{
			Hostname: "fixture-host", Kernel: "6.18.0-fixture", OS: "linux", Arch: "amd64",
			CPUModel: "Fixture CPU @ 2.40GHz", Cores: 2, MemoryMiB: 24576,
			GoVersion: "go1.26.8", Commit: "0000000fixture", Version: "v0.0.0-fixture", Provider: "netns",
		},
		Scenario: results.ScenarioCopy{
			Path: "testdata/fixture-scenario.yaml",
			Source: "# TEST FIXTURE: hand-made data for the reports tests, not a measurement.\n" +
				"name: fixture\ndatapaths: [none, sidecar]\ntopology:\n  nodes: 2\n  pods_per_node: 2\n" +
				"  services: [{name: echo, replicas: 3}]\nload:\n  rates: [500, 2000]\n  duration: 10s\n  warmup: 2s\n" +
				"repetitions: 3\n# <script>alert('escaped?')</script>\n",
			Resolved: json.RawMessage(`{"name":"fixture","datapaths":["none","sidecar"],"topology":{"nodes":2,"pods_per_node":2,"services":[{"name":"echo","replicas":3,"port":8080}]},"load":{"service":"echo","rates":[500,2000],"duration":"10s","warmup":"2s","connections":8},"repetitions":3}`),
		},
	}
	shapes := []fixtureShape{
		{"none", 500, 35, 75, 62, 2.1, 4.1, 38, 21, 0, 0, "echo request counters", []string{"echo_requests"}},
		{"none", 2000, 38, 92, 58, 2.05, 3.8, 36, 19, 0, 0, "echo request counters", []string{"echo_requests"}},
		{"sidecar", 500, 76, 150, 151, 8.3, 12.2, 39, 22, 85, 26 << 20, "proxy /stats", []string{"inbound_requests", "outbound_requests"}},
		{"sidecar", 2000, 84, 205, 139, 8.1, 11.5, 37, 20, 77, 27 << 20, "proxy /stats", []string{"inbound_requests", "outbound_requests"}},
	}
	jitter := []float64{1.00, 1.04, 0.97}
	for _, sh := range shapes {
		for rep := 1; rep <= 3; rep++ {
			j := jitter[rep-1]
			n := int(sh.rate * 10)
			h, lat := histogramOf(lognormal(n, sh.p50*j, sh.p99*j*j))
			fails := int64(0)
			var windows []results.Window
			for w := range 10 {
				win := results.Window{StartS: float64(w), Requests: int64(sh.rate), Successes: int64(sh.rate), SuccessRatio: 1,
					P50US: math.Round(sh.p50 * j * (1 + 0.02*float64(w%3))), P99US: math.Round(sh.p99 * j * (1 + 0.05*float64(w%4)))}
				// A disturbance in the sidecar's second repetition at the
				// high rate, so that the timeline has something to show.
				if sh.dp == "sidecar" && sh.rate == 2000 && rep == 2 && (w == 4 || w == 5) {
					win.Successes = int64(sh.rate * 0.98)
					win.SuccessRatio = 0.98
					win.P99US = 2100
					fails += win.Requests - win.Successes
				}
				windows = append(windows, win)
			}
			succ := int64(n) - fails
			step := results.Step{
				Datapath: sh.dp, Service: "echo", Repetition: rep, OfferedRPS: sh.rate,
				AchievedRPS: math.Round(float64(succ)/10*10) / 10, SentRPS: sh.rate,
				Warmup: results.Duration(2 * time.Second), Duration: results.Duration(10 * time.Second),
				Requests: int64(n), Successes: succ, SuccessRatio: float64(succ) / float64(n),
				LatencyUS: lat, Histogram: h, Windows: windows,
			}
			if fails > 0 {
				step.Errors = map[string]int64{"timeout": fails}
				fl := results.Latency{P50: 2000, P90: 2000, P99: 2000, P999: 2000, Max: 2000, Mean: 2000}
				step.FailureLatencyUS = &fl
			}
			// The kernel saw each request about 20 µs shorter at p50 and
			// 40 µs at p99 than the client did.
			kh, kl := histogramOf(lognormal(n, sh.p50*j-20, sh.p99*j*j-40))
			ol := results.Latency{P50: 20, P90: 28, P99: 40, P999: 90, Max: 150, Mean: 22}
			step.KernelStamped, step.KernelLatencyUS, step.KernelHistogram, step.ClientOverheadUS = succ, &kl, &kh, &ol
			part := func(p50 float64) results.Latency { return results.Latency{P50: p50, P90: p50 * 1.5, P99: p50 * 3} }
			step.Client = results.ClientRun{
				OverheadPartsUS: map[string]results.Latency{
					"send_lag": part(4), "to_socket": part(5), "to_wire": part(3), "from_wire": part(7), "after_read": part(1),
				},
				SendLagUS:   results.Latency{P50: 12, P90: 15, P99: 30, P999: 60, Max: 90, Mean: 13},
				Connections: 8, ConnectionsOpened: 8, KernelStamps: true, PacerSpin: results.Duration(200 * time.Microsecond),
			}
			counters := map[string]int64{}
			for _, k := range sh.proofCounterKey {
				counters[k] = succ
			}
			step.Proof = results.Proof{Source: sh.proofSource, Counters: counters, Verified: true,
				Detail: fmt.Sprintf("%s counted %d requests for %d successes", sh.proofSource, succ, succ),
				Checks: []results.ProofCheck{{
					Name: sh.proofSource + " answered the successes", Got: float64(succ), Want: fmt.Sprintf("%d ± 3", succ),
					Figure: "1.00 req/success", OK: true, Why: "window edges",
				}}}
			segs := sh.segs * j
			step.Cost = results.Cost{
				TCPInSegs: int64(segs * float64(n) / 2), TCPOutSegs: int64(segs * float64(n) / 2),
				SegmentsPerRequest:      math.Round(segs*100) / 100,
				ContextSwitches:         int64(sh.ctx * j * float64(n)),
				ContextSwitchesPerReq:   math.Round(sh.ctx*j*100) / 100,
				CPUSeconds:              sh.cpu * j * float64(n) / 1e6,
				CPUMicrosPerRequest:     math.Round(sh.cpu*j*10) / 10,
				ClientCPUMicrosPerReq:   math.Round(sh.clientCPU*j*10) / 10,
				ServerCPUMicrosPerReq:   math.Round(sh.serverCPU*j*10) / 10,
				DatapathCPUMicrosPerReq: math.Round(sh.datapathCPU*j*10) / 10,
			}
			pid := 1000 * rep
			add := func(pod, node, name, role string, rss, pss int64) {
				pid++
				step.Processes = append(step.Processes, results.Process{Pod: pod, Node: node, Name: name, Role: role, PID: pid,
					RSSBytes: rss, PSSBytes: pss, CPUSeconds: 0.1, ContextSwitches: 1000})
			}
			for node := range 2 {
				for p := range 2 {
					pod := fmt.Sprintf("pod-%d-%d", node, p)
					nd := fmt.Sprintf("node-%d", node)
					add(pod, nd, "meshbench-echo", results.RoleServer, 12<<20, 7<<20)
					if node == 0 && p == 0 {
						add(pod, nd, "meshbench-load", results.RoleClient, 44<<20, 38<<20)
					}
					if sh.proxyRSS > 0 {
						add(pod, nd, "meshbench-proxy", results.RoleDatapath, sh.proxyRSS+int64(rep)<<18, sh.proxyRSS*7/10+int64(rep)<<18)
					}
				}
			}
			run.Steps = append(run.Steps, step)
		}
	}
	ch, cl := histogramOf(lognormal(20000, 22, 48))
	run.Calibration = &results.Step{
		Datapath: "calibration", Service: "loopback", Repetition: 1, OfferedRPS: 2000, AchievedRPS: 2000, SentRPS: 2000,
		Duration: results.Duration(10 * time.Second), Requests: 20000, Successes: 20000, SuccessRatio: 1,
		LatencyUS: cl, Histogram: ch,
		Proof: results.Proof{Source: "calibration", Verified: true, Detail: "loopback"},
	}
	run.Summaries = results.Summarize(run.Steps)
	return run
}

func loadFixture(t *testing.T) *results.Run {
	t.Helper()
	run, err := results.ReadFile(fixturePath)
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	return run
}

// TestFixture rewrites testdata/run.json with -write-fixture and checks
// that it reads back. (Bytes are not compared: floating point may differ
// in the last digit across architectures.)
func TestFixture(t *testing.T) {
	want := makeFixture()
	if *writeFixture {
		if err := os.MkdirAll(filepath.Dir(fixturePath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := results.WriteFile(fixturePath, want); err != nil {
			t.Fatal(err)
		}
	}
	got := loadFixture(t)
	if len(got.Steps) != 12 || len(got.Summaries) != 4 {
		t.Fatalf("fixture has %d steps, %d summaries; want 12, 4", len(got.Steps), len(got.Summaries))
	}
	if got.ID != want.ID || !strings.HasPrefix(got.Scenario.Source, "# TEST FIXTURE") {
		t.Errorf("testdata/run.json is not makeFixture's fixture (id %q); rerun with -write-fixture", got.ID)
	}
}
