package reports

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/meshbench/meshbench/harness/results"
)

// The SMP export follows the messages of the Service Mesh Performance
// specification (protos/service_mesh_performance.proto, package smp) in
// their proto3 JSON form: lowerCamelCase names, int64 as strings,
// timestamps as RFC 3339, enums by name, empty fields omitted. SMP has no
// message that holds a whole run, so the file is an object with one member
// per message kind; each member is a valid SMP message.

// smpDocument is the whole smp.json.
type smpDocument struct {
	PerformanceTestConfig  smpTestConfig   `json:"performanceTestConfig"`
	EnvironmentConfig      smpEnvironment  `json:"environmentConfig"`
	ServiceMeshConfigs     []smpMeshConfig `json:"serviceMeshConfigs"`
	PerformanceTestResults []smpTestResult `json:"performanceTestResults"`
}

// smpTestConfig is smp.PerformanceTestConfig.
type smpTestConfig struct {
	ID       string            `json:"id,omitempty"`
	Name     string            `json:"name,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	Clients  []smpClient       `json:"clients,omitempty"`
	Duration string            `json:"duration,omitempty"`
}

// smpClient is smp.PerformanceTestConfig.Client.
type smpClient struct {
	Internal      bool   `json:"internal"`
	LoadGenerator string `json:"loadGenerator,omitempty"`
	Protocol      string `json:"protocol"`
	Connections   int32  `json:"connections,omitempty"`
	RPS           string `json:"rps,omitempty"` // int64
}

// smpEnvironment is smp.EnvironmentConfig.
type smpEnvironment struct {
	ID     string            `json:"id,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	Node   []smpNode         `json:"node,omitempty"`
}

// smpNode is smp.EnvironmentConfig.Node.
type smpNode struct {
	Type  string `json:"type,omitempty"`
	Cores int32  `json:"cores,omitempty"`
	MemMB string `json:"memMb,omitempty"` // int64
}

// smpMeshConfig is smp.ServiceMeshConfig.
type smpMeshConfig struct {
	ID      string            `json:"id"`
	Labels  map[string]string `json:"labels,omitempty"`
	Sidecar *smpSidecar       `json:"sidecar,omitempty"`
}

// smpSidecar is smp.ServiceMeshConfig.Sidecar.
type smpSidecar struct {
	Count     int32 `json:"count"`
	CPUMCores int32 `json:"cpuMCores"`
	MemMB     int32 `json:"memMb"`
}

// smpTestResult is smp.PerformanceTestResult.
type smpTestResult struct {
	ID           string            `json:"id"`
	Labels       map[string]string `json:"labels,omitempty"`
	StartTime    string            `json:"startTime,omitempty"`
	EndTime      string            `json:"endTime,omitempty"`
	LatenciesMS  smpLatency        `json:"latenciesMs"`
	ActualQPS    float64           `json:"actualQPS"`
	TestID       string            `json:"testId,omitempty"`
	MeshConfigID string            `json:"meshConfigId,omitempty"`
	EnvID        string            `json:"envId,omitempty"`
}

// smpLatency is smp.PerformanceTestResult.Latency, in milliseconds.
type smpLatency struct {
	Min     float64 `json:"min"`
	Average float64 `json:"average"`
	P50     float64 `json:"p50"`
	P90     float64 `json:"p90"`
	P99     float64 `json:"p99"`
	Max     float64 `json:"max"`
}

// label formats a number for an SMP label value.
func label(v float64) string { return strconv.FormatFloat(finite(v), 'g', -1, 64) }

// WriteSMP writes run as JSON compatible with the Service Mesh Performance
// (SMP) specification, for the fields that map:
//
//	SMP field                                  meshbench source
//	PerformanceTestConfig.id / name            Run.ID / scenario name
//	PerformanceTestConfig.clients[]            one per offered rate: internal, "http",
//	                                           connections (resolved scenario), rps
//	PerformanceTestConfig.duration             Step.Duration of the first step
//	EnvironmentConfig.id                       Environment.Hostname
//	EnvironmentConfig.node[]                   one node: CPU model, cores, memory
//	ServiceMeshConfig.id                       datapath name
//	ServiceMeshConfig.sidecar                  per-pod datapaths only: proxy count,
//	                                           datapath CPU (mCores) and PSS (MB)
//	PerformanceTestResult (one per step)       id run/datapath/rate/repetition
//	  .latenciesMs.average/p50/p90/p99/max     LatencyUS.Mean/P50/P90/P99/Max ÷ 1000
//	  .latenciesMs.min                         upper bound of the lowest histogram bucket
//	  .actualQPS                               Step.AchievedRPS
//	  .startTime / .endTime                    Run.Started / Run.Finished (steps carry no times)
//	  .testId / .meshConfigId / .envId         Run.ID / datapath / hostname
//
// Not mapped, carried in labels prefixed "meshbench." instead: p99.9,
// success ratio, sent rate, errors, CPU µs, TCP segments and context
// switches per request, proof of path, kernel, provider, commit, and
// per-node proxies (SMP models only sidecars and gateways). Left empty:
// smpVersion (the proto pins no value), detailsUri, kubernetesVersion,
// meshType, meshBuild/proxyBuild, ingress/egress gateways, telemetry,
// policy, control plane and individual workloads.
func WriteSMP(w io.Writer, run *results.Run) error {
	m := newModel(run)
	env := smpEnvironmentOf(run)
	doc := smpDocument{
		PerformanceTestConfig:  smpTestConfigOf(run, m),
		EnvironmentConfig:      env,
		ServiceMeshConfigs:     smpMeshConfigs(m),
		PerformanceTestResults: smpTestResults(run, env.ID),
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("write smp: %w", err)
	}
	return nil
}

// smpTestConfigOf is the run's PerformanceTestConfig: its id and scenario,
// one client per offered rate and the first step's duration.
func smpTestConfigOf(run *results.Run, m *model) smpTestConfig {
	sc, _ := resolvedScenario(run)
	tc := smpTestConfig{
		ID:   run.ID,
		Name: sc.Name,
		Labels: map[string]string{
			"meshbench.scenario_path": run.Scenario.Path,
			"meshbench.repetitions":   strconv.Itoa(sc.Repetitions),
			"meshbench.status":        run.Status,
		},
	}
	for _, r := range m.rates {
		tc.Clients = append(tc.Clients, smpClient{
			Internal:      true,
			LoadGenerator: "meshbench",
			Protocol:      "http",
			Connections:   int32(sc.Load.Connections),
			RPS:           strconv.FormatInt(int64(r), 10),
		})
	}
	if len(run.Steps) > 0 {
		tc.Duration = time.Duration(run.Steps[0].Duration).String()
	}
	return tc
}

// smpEnvironmentOf is the run's EnvironmentConfig: the host, named by its
// hostname (or the run id when it has none), as one node.
func smpEnvironmentOf(run *results.Run) smpEnvironment {
	e := run.Environment
	envID := e.Hostname
	if envID == "" {
		envID = run.ID + "/environment"
	}
	return smpEnvironment{
		ID: envID,
		Labels: map[string]string{
			"meshbench.kernel":   e.Kernel,
			"meshbench.os":       e.OS,
			"meshbench.arch":     e.Arch,
			"meshbench.provider": e.Provider,
			"meshbench.go":       e.GoVersion,
			"meshbench.commit":   e.Commit,
			"meshbench.version":  e.Version,
		},
		Node: []smpNode{{Type: e.CPUModel, Cores: int32(e.Cores), MemMB: strconv.FormatInt(e.MemoryMiB*(1<<20)/1e6, 10)}},
	}
}

// smpMeshConfigs is one ServiceMeshConfig per datapath: its proxy model and
// memory in labels, and for per-pod datapaths the sidecar's count, CPU at
// the reference rate and memory.
func smpMeshConfigs(m *model) []smpMeshConfig {
	configs := []smpMeshConfig{}
	memBy := memoryByDatapath(memoryData(m))
	ref := m.refRate()
	for _, dp := range m.datapaths {
		mdl := proxyModel(dp, m.byDP[dp])
		mc := smpMeshConfig{ID: dp, Labels: map[string]string{"meshbench.proxy_model": mdl}}
		if mr, ok := memBy[dp]; ok && mr.Proxies > 0 {
			mc.Labels["meshbench.proxies"] = label(mr.Proxies)
			mc.Labels["meshbench.proxy_pss_bytes"] = label(mr.ProxyPSS)
			mc.Labels["meshbench.proxy_rss_bytes"] = label(mr.ProxyRSS)
			if mdl == modelPerPod {
				sc := &smpSidecar{
					Count: int32(mr.Proxies),
					MemMB: int32(mr.RolePSS[results.RoleDatapath] / 1e6),
				}
				if r, ok := m.rateFor(dp, ref); ok {
					if s, ok := m.summary(dp, r); ok {
						var dpCPU []float64
						for _, st := range m.steps[groupKey{dp, r}] {
							dpCPU = append(dpCPU, st.Cost.DatapathCPUMicrosPerReq*st.AchievedRPS/1000)
						}
						sc.CPUMCores = int32(median(dpCPU))
						mc.Labels["meshbench.sidecar_cpu_rate_rps"] = fmtRate(s.OfferedRPS)
					}
				}
				mc.Sidecar = sc
			}
		}
		configs = append(configs, mc)
	}
	return configs
}

// smpTestResults is one PerformanceTestResult per step, in run order.
func smpTestResults(run *results.Run, envID string) []smpTestResult {
	out := []smpTestResult{}
	var start, end string
	if !run.Started.IsZero() {
		start = run.Started.UTC().Format(time.RFC3339Nano)
	}
	if !run.Finished.IsZero() {
		end = run.Finished.UTC().Format(time.RFC3339Nano)
	}
	for _, s := range run.Steps {
		var minUS float64
		if len(s.Histogram.Buckets) > 0 {
			for _, b := range s.Histogram.Buckets {
				if b.Count > 0 {
					minUS = float64(b.UpperUS)
					break
				}
			}
		}
		labels := map[string]string{
			"meshbench.datapath":             s.Datapath,
			"meshbench.service":              s.Service,
			"meshbench.offered_rps":          fmtRate(s.OfferedRPS),
			"meshbench.repetition":           strconv.Itoa(s.Repetition),
			"meshbench.sent_rps":             label(s.SentRPS),
			"meshbench.requests":             strconv.FormatInt(s.Requests, 10),
			"meshbench.success_ratio":        label(s.SuccessRatio),
			"meshbench.p999_ms":              label(s.LatencyUS.P999 / 1000),
			"meshbench.cpu_us_per_request":   label(s.Cost.CPUMicrosPerRequest),
			"meshbench.segments_per_request": label(s.Cost.SegmentsPerRequest),
			"meshbench.ctxsw_per_request":    label(s.Cost.ContextSwitchesPerReq),
			"meshbench.proof_verified":       strconv.FormatBool(s.Proof.Verified),
		}
		for k, v := range s.Errors {
			labels["meshbench.errors."+k] = strconv.FormatInt(v, 10)
		}
		if s.Error != "" {
			labels["meshbench.error"] = s.Error
		}
		out = append(out, smpTestResult{
			ID:        fmt.Sprintf("%s/%s/%s/%d", run.ID, s.Datapath, fmtRate(s.OfferedRPS), s.Repetition),
			Labels:    labels,
			StartTime: start,
			EndTime:   end,
			LatenciesMS: smpLatency{
				Min:     finite(minUS / 1000),
				Average: finite(s.LatencyUS.Mean / 1000),
				P50:     finite(s.LatencyUS.P50 / 1000),
				P90:     finite(s.LatencyUS.P90 / 1000),
				P99:     finite(s.LatencyUS.P99 / 1000),
				Max:     finite(s.LatencyUS.Max / 1000),
			},
			ActualQPS:    finite(s.AchievedRPS),
			TestID:       run.ID,
			MeshConfigID: s.Datapath,
			EnvID:        envID,
		})
	}
	return out
}
