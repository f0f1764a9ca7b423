package reports

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/perf/benchfmt"

	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/internal/golden"
)

func TestWriteCSV(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			run := tc.run(t)
			var buf bytes.Buffer
			if err := WriteCSV(&buf, run); err != nil {
				t.Fatal(err)
			}
			rows, err := csv.NewReader(&buf).ReadAll()
			if err != nil {
				t.Fatalf("read back: %v", err)
			}
			if len(rows) != 1+len(run.Steps) {
				t.Fatalf("%d rows, want header + %d steps", len(rows), len(run.Steps))
			}
			for i, r := range rows {
				if len(r) != len(csvHeader) {
					t.Errorf("row %d has %d columns, want %d", i, len(r), len(csvHeader))
				}
			}
			if len(run.Steps) > 0 {
				s := run.Steps[0]
				if rows[1][1] != s.Datapath || rows[1][14] != fmtFloat(s.LatencyUS.P99) {
					t.Errorf("first row %v does not match step 1 (datapath %s, p99 %v)", rows[1], s.Datapath, s.LatencyUS.P99)
				}
			}
		})
	}
}

func fmtFloat(v float64) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestWriteBenchfmt(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			run := tc.run(t)
			var buf bytes.Buffer
			if err := WriteBenchfmt(&buf, run); err != nil {
				t.Fatal(err)
			}
			if tc.name == "fixture" {
				golden.Check(t, filepath.Join("testdata", "fixture.benchfmt.golden.txt"), buf.Bytes())
			}
			r := benchfmt.NewReader(bytes.NewReader(buf.Bytes()), "results.benchfmt.txt")
			var got []*benchfmt.Result
			for r.Scan() {
				switch rec := r.Result().(type) {
				case *benchfmt.SyntaxError:
					t.Errorf("syntax error: %v", rec)
				case *benchfmt.Result:
					got = append(got, rec.Clone())
				}
			}
			if err := r.Err(); err != nil {
				t.Fatal(err)
			}
			var want []results.Step
			if run.Calibration != nil {
				want = append(want, *run.Calibration)
			}
			for _, s := range run.Steps {
				if s.Requests > 0 {
					want = append(want, s)
				}
			}
			if len(got) != len(want) {
				t.Fatalf("read back %d results, want %d", len(got), len(want))
			}
			for i, res := range got {
				s := want[i]
				if v, ok := res.Value("p99-us"); !ok || v != s.LatencyUS.P99 {
					t.Errorf("result %d (%s): p99-us = %v, %v; want %v", i, res.Name, v, ok, s.LatencyUS.P99)
				}
				if v, ok := res.Value("achieved-rps"); !ok || v != s.AchievedRPS {
					t.Errorf("result %d: achieved-rps = %v, want %v", i, v, s.AchievedRPS)
				}
				if got, want := res.GetConfig("kernel"), string(configValue(run.Environment.Kernel)); got != want {
					t.Errorf("result %d: kernel config %q, want %q", i, got, want)
				}
				if i == 0 && run.Calibration != nil {
					continue
				}
				base, parts := res.Name.Parts()
				// A label's "/" (sidecar/haproxy) is a separator there.
				if dp := benchNamePart(s.Datapath); string(base) != "Mesh" || len(parts) != 2 || string(parts[0]) != "/datapath="+dp {
					t.Errorf("result %d name %q: want Mesh/datapath=%s/rate=…", i, res.Name, dp)
				}
			}
			if better := r.Units().GetBetter("achieved-rps"); better != 1 {
				t.Errorf("achieved-rps better = %d, want higher (1)", better)
			}
		})
	}
}

func TestWriteSMP(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			run := tc.run(t)
			var buf bytes.Buffer
			if err := WriteSMP(&buf, run); err != nil {
				t.Fatal(err)
			}
			var doc struct {
				PerformanceTestConfig struct {
					ID      string
					Clients []struct {
						Protocol string
						RPS      string `json:"rps"`
					}
				}
				ServiceMeshConfigs []struct {
					ID      string
					Sidecar *struct{ Count, MemMb, CPUMCores int }
				}
				PerformanceTestResults []struct {
					ID           string
					LatenciesMs  struct{ Min, Average, P50, P90, P99, Max float64 }
					ActualQPS    float64
					MeshConfigID string `json:"meshConfigId"`
					Labels       map[string]string
				}
			}
			if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
				t.Fatalf("decode smp.json: %v", err)
			}
			checkSMPFields(t, buf.Bytes())
			if doc.PerformanceTestConfig.ID != run.ID {
				t.Errorf("config id %q, want %q", doc.PerformanceTestConfig.ID, run.ID)
			}
			if len(doc.PerformanceTestResults) != len(run.Steps) {
				t.Fatalf("%d results, want one per step (%d)", len(doc.PerformanceTestResults), len(run.Steps))
			}
			for i, r := range doc.PerformanceTestResults {
				s := run.Steps[i]
				if r.LatenciesMs.P99 != s.LatencyUS.P99/1000 || r.ActualQPS != s.AchievedRPS || r.MeshConfigID != s.Datapath {
					t.Errorf("result %d = %+v; want p99 %v ms, qps %v, mesh %s", i, r, s.LatencyUS.P99/1000, s.AchievedRPS, s.Datapath)
				}
				if r.Labels["meshbench.p999_ms"] == "" {
					t.Errorf("result %d lacks the p99.9 label", i)
				}
			}
			if tc.name == "fixture" {
				if len(doc.ServiceMeshConfigs) != 2 || doc.ServiceMeshConfigs[1].Sidecar == nil || doc.ServiceMeshConfigs[1].Sidecar.Count != 4 {
					t.Errorf("mesh configs %+v; want none and sidecar with 4 sidecars", doc.ServiceMeshConfigs)
				}
				if len(doc.PerformanceTestConfig.Clients) != 2 || doc.PerformanceTestConfig.Clients[1].RPS != "2000" {
					t.Errorf("clients %+v; want one per rate", doc.PerformanceTestConfig.Clients)
				}
			}
		})
	}
}

// smpFields are the proto3 JSON names of the SMP messages' fields
// (protos/service_mesh_performance.proto), by message.
var smpFields = map[string][]string{
	"PerformanceTestConfig":        {"smpVersion", "id", "name", "labels", "clients", "duration"},
	"PerformanceTestConfig.Client": {"internal", "loadGenerator", "protocol", "connections", "rps", "headers", "cookies", "body", "contentType", "endpointUrl"},
	"EnvironmentConfig":            {"smpVersion", "id", "labels", "kubernetesVersion", "node", "individualWorkloads", "trafficMetadata"},
	"EnvironmentConfig.Node":       {"type", "cores", "memMb"},
	"ServiceMeshConfig": {"smpVersion", "id", "labels", "ingressGateway", "sidecar", "meshTelemetry", "meshPolicy",
		"meshControlPlane", "meshPolicyEnabled", "meshTelemetryEnabled", "mtlsEnabled", "proxyConcurrency", "meshBuild",
		"proxyBuild", "expGroupUuid", "expUuid", "profile", "meshType", "applicationMetadata"},
	"ServiceMeshConfig.Sidecar": {"count", "cpuMCores", "memMb", "rps", "bps"},
	"PerformanceTestResult": {"smpVersion", "id", "labels", "startTime", "endTime", "latenciesMs", "actualQPS",
		"detailsUri", "testId", "meshConfigId", "envId"},
	"PerformanceTestResult.Latency": {"min", "average", "p50", "p90", "p99", "max"},
}

// checkSMPFields fails on any member of an SMP message in doc that the
// SMP proto does not define.
func checkSMPFields(t *testing.T, doc []byte) {
	t.Helper()
	var top map[string]json.RawMessage
	if err := json.Unmarshal(doc, &top); err != nil {
		t.Fatal(err)
	}
	check := func(msg string, raw json.RawMessage) map[string]json.RawMessage {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			t.Fatalf("%s: %v", msg, err)
		}
		for k := range obj {
			if !slices.Contains(smpFields[msg], k) {
				t.Errorf("%s has field %q, which SMP does not define", msg, k)
			}
		}
		return obj
	}
	each := func(raw json.RawMessage, f func(json.RawMessage)) {
		var list []json.RawMessage
		if len(raw) == 0 {
			return
		}
		if err := json.Unmarshal(raw, &list); err != nil {
			t.Fatal(err)
		}
		for _, r := range list {
			f(r)
		}
	}
	cfg := check("PerformanceTestConfig", top["performanceTestConfig"])
	each(cfg["clients"], func(r json.RawMessage) { check("PerformanceTestConfig.Client", r) })
	env := check("EnvironmentConfig", top["environmentConfig"])
	each(env["node"], func(r json.RawMessage) { check("EnvironmentConfig.Node", r) })
	each(top["serviceMeshConfigs"], func(r json.RawMessage) {
		mc := check("ServiceMeshConfig", r)
		if sc, ok := mc["sidecar"]; ok {
			check("ServiceMeshConfig.Sidecar", sc)
		}
	})
	each(top["performanceTestResults"], func(r json.RawMessage) {
		res := check("PerformanceTestResult", r)
		check("PerformanceTestResult.Latency", res["latenciesMs"])
	})
}
