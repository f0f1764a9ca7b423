package scenarios

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshbench/meshbench/internal/golden"
)

// TestBadFiles checks that every problem is reported with its file, line
// and field, exactly.
func TestBadFiles(t *testing.T) {
	tests := []struct {
		file string
		want []string // lines of the error, without the "testdata/bad/FILE" prefix
	}{
		{"unknown_top.yaml", []string{
			`:3: unknown field "nodes" at top level (did you mean topology.nodes? known fields: name, description, topology, datapaths, load, repetitions, chaos, nodeproxy, provider)`,
		}},
		{"unknown_nested.yaml", []string{
			`:5: unknown field "rate" in load (did you mean "rates"? known fields: service, rates, duration, warmup, connections, request_size, response_size, keep_alive, timeout, calibrate, pacer_spin, kernel_timestamps)`,
		}},
		{"nodeproxy_hops.yaml", []string{
			`:4: nodeproxy.hops: unknown value "three" (want one of both, source)`,
		}},
		{"nodeproxy_engines.yaml", []string{
			`:13: topology.services[2].mesh.engine: "envoy", but topology.services[0].mesh.engine is "builtin": nodeproxy runs one proxy per node for every service, so it runs one engine; make the services agree (or use "auto"), or leave nodeproxy out of datapaths`,
		}},
		{"mesh.yaml", []string{
			`:6: topology.services[0].mesh.lb_policy: unknown value "ROUND_ROBINN" (want one of ROUND_ROBIN, LEAST_REQUEST, MAGLEV, RANDOM)`,
			`:8: topology.services[0].mesh.circuit_breakers.max_requests: must be between 0 and 1048576, got -1`,
			`:11: topology.services[0].mesh.retries.retry_on: unknown retry condition "sometimes" (want a comma list of 5xx, connect-failure, reset, gateway-error, retriable-4xx, refused-stream)`,
		}},
		{"string_for_int.yaml", []string{
			`:4: load.rates[1]: want an integer, got "abc"`,
		}},
		{"negative_rate.yaml", []string{
			`:3: load.rates[1]: must be between 1 and 200000, got -5`,
		}},
		{"too_many_replicas.yaml", []string{
			`:8: topology.services[1].replicas: total replicas 4 exceed the 3 pods available to services (2 nodes × 2 pods per node, less the client's pod)`,
		}},
		{"unknown_datapath.yaml", []string{
			`:3: datapaths[1]: unknown datapath "istio" (known: none, sidecar, sockmap, nodeproxy, afxdp)`,
		}},
		{"duplicate_rate.yaml", []string{
			`:5: load.rates[2]: duplicate rate 100 (also load.rates[0])`,
		}},
		{"bad_duration.yaml", []string{
			`:3: load.duration: want a duration such as "10s" or "1m30s", got "10 seconds"`,
			`:4: load.warmup: want a duration such as "10s" or "1m30s", got 5 (add a unit)`,
		}},
		{"bad_bytesize.yaml", []string{
			`:4: load.response_size: want a size such as 64, "32KiB" or "1MiB", got "4 XB"`,
		}},
		{"duplicate_key.yaml", []string{
			`:5: duplicate field "nodes" in topology (first set at line 4)`,
		}},
		{"empty.yaml", []string{
			`:1: empty scenario file: want a mapping of fields such as "topology", "load" and "datapaths"`,
		}},
		{"comments_only.yaml", []string{
			`:1: empty scenario file: want a mapping of fields such as "topology", "load" and "datapaths"`,
		}},
		{"not_mapping.yaml", []string{
			`:1: top level must be a mapping of fields, got a list`,
		}},
		{"syntax.yaml", []string{
			`:2: invalid YAML: did not find expected ',' or ']'`,
		}},
		{"two_documents.yaml", []string{
			`:3: more than one YAML document: a scenario file holds exactly one`,
		}},
		{"unknown_provider.yaml", []string{
			`:2: provider: unknown provider "nomad" (want one of netns, kube, kind)`,
		}},
		{"reserved_port.yaml", []string{
			`:4: topology.services[0].port: port 15001 is reserved by the harness (reserved: 15000, 15001, 15006, 15008, 15020, 15021, 15090)`,
		}},
		{"wrong_shapes.yaml", []string{
			`:1: topology: want a mapping, got 3`,
			`:2: datapaths: want a list, got "none"`,
			`:4: load.rates[0]: want an integer, got 1.5`,
			`:5: load.keep_alive: want true or false, got "yes"`,
			`:6: load.connections: want an integer, got 99999999999999999999999`,
			`:7: repetitions: want an integer, got a list`,
		}},
		{"many.yaml", []string{
			`:3: topology.nodes: must be between 1 and 16, got 0`,
			`:4: topology.pods_per_node: must be between 1 and 64, got 65`,
			`:6: topology.services[0].name: "Echo_1" is not a DNS label: use at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit`,
			`:7: topology.services[0].replicas: must be between 1 and 1024, got 0`,
			`:8: topology.services[0].port: must be between 1 and 65535, got 70000`,
			`:10: topology.services[2].name: duplicate service "b" (also topology.services[1])`,
			`:11: datapaths: must list at least one datapath (known: none, sidecar, sockmap, nodeproxy, afxdp)`,
			`:13: load.service: no service named "nope" (services: Echo_1, b)`,
			`:14: load.rates: must list at least one rate in requests per second`,
			`:15: load.duration: must be between 1s and 1h, got 2h`,
			`:16: load.warmup: must be between 0s and 10m, got -1s`,
			`:17: load.connections: must be between 1 and 1024, got 0`,
			`:18: load.request_size: must be between 0 and 16MiB, got 17MiB`,
			`:19: load.timeout: must be > 0, got 0s`,
			`:20: repetitions: must be between 1 and 100, got 101`,
		}},
	}
	for _, tt := range tests {
		t.Run(strings.TrimSuffix(tt.file, ".yaml"), func(t *testing.T) {
			path := filepath.Join("testdata", "bad", tt.file)
			sc, err := LoadFile(path)
			if err == nil {
				t.Fatalf("LoadFile(%s) = %+v, want an error", path, sc)
			}
			if sc != nil {
				t.Errorf("LoadFile(%s) returned a scenario with its error", path)
			}
			want := make([]string, len(tt.want))
			for i, w := range tt.want {
				want[i] = path + w
			}
			got := strings.Split(err.Error(), "\n")
			if !slices.Equal(got, want) {
				t.Errorf("LoadFile(%s) error:\n%s\nwant:\n%s", path, err, strings.Join(want, "\n"))
			}
			var e *Error
			if !errors.As(err, &e) || e.File != path || e.Line == 0 {
				t.Errorf("errors.As(*Error) = %+v, want one with File %s and a line", e, path)
			}
		})
	}
}

func TestTooManyErrors(t *testing.T) {
	var b strings.Builder
	b.WriteString("load:\n  rates:\n")
	for range 30 {
		b.WriteString("    - 0\n")
	}
	_, err := Parse("x.yaml", []byte(b.String()))
	if err == nil {
		t.Fatal("Parse succeeded, want 30 errors")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != MaxErrors+1 {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), MaxErrors+1, err)
	}
	if want := "x.yaml:3: load.rates[0]: must be between 1 and 200000, got 0"; lines[0] != want {
		t.Errorf("first line %q, want %q", lines[0], want)
	}
	if want := "x.yaml: too many errors (10 more not shown)"; lines[MaxErrors] != want {
		t.Errorf("last line %q, want %q", lines[MaxErrors], want)
	}
}

func TestShippedScenarios(t *testing.T) {
	type want struct {
		nodes, podsPerNode, replicas int
		rates                        []int
		duration, warmup             time.Duration
		repetitions                  int
		datapaths                    []string
		// maxAll bounds EstimatedDuration with every known datapath.
		maxPerDatapath, maxAll time.Duration
	}
	tests := []struct {
		file string
		want want
	}{
		{"quick.yaml", want{2, 2, 2, []int{200}, 3 * time.Second, time.Second, 1, KnownDatapaths,
			time.Minute, 5 * time.Minute}},
		{"default.yaml", want{2, 3, 2, []int{500, 2000}, 6 * time.Second, 2 * time.Second, 5, KnownDatapaths,
			10 * time.Minute, 10 * time.Minute}},
	}
	for _, tt := range tests {
		t.Run(strings.TrimSuffix(tt.file, ".yaml"), func(t *testing.T) {
			sc, err := LoadFile(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			w := tt.want
			got := want{sc.Topology.Nodes, sc.Topology.PodsPerNode, sc.Topology.Services[0].Replicas,
				sc.Load.Rates, time.Duration(sc.Load.Duration), time.Duration(sc.Load.Warmup), sc.Repetitions, sc.Datapaths,
				w.maxPerDatapath, w.maxAll}
			if !reflect.DeepEqual(got, w) {
				t.Errorf("%s = %+v, want %+v", tt.file, got, w)
			}
			if sc.Name != strings.TrimSuffix(tt.file, ".yaml") || len(sc.Topology.Services) != 1 ||
				sc.Topology.Services[0].Name != "echo" || sc.Topology.Services[0].Port != 8080 || sc.Load.Service != "echo" ||
				sc.Load.RequestSize != 64 || sc.Load.ResponseSize != 64 {
				t.Errorf("%s: unexpected name, service or sizes: %+v", tt.file, sc)
			}
			if d := sc.EstimatedDuration(); d > w.maxPerDatapath*time.Duration(len(sc.Datapaths)) {
				t.Errorf("%s: estimated %s, want at most %s per datapath", tt.file, d, w.maxPerDatapath)
			}
			if err := sc.WithDatapaths(KnownDatapaths); err != nil {
				t.Fatal(err)
			}
			if d := sc.EstimatedDuration(); d > w.maxAll {
				t.Errorf("%s with all datapaths: estimated %s, want at most %s", tt.file, d, w.maxAll)
			}
		})
	}
}

// TestEstimatesInComments keeps the figures written in the shipped files'
// comments true.
func TestEstimatesInComments(t *testing.T) {
	tests := []struct {
		file      string
		datapaths []string
		want      string
	}{
		{"default.yaml", KnownDatapaths, "≈ 9m1s"},
		{"quick.yaml", []string{"none"}, "About 13s per datapath"},
		{"scale.yaml", []string{"none", "sidecar", "sockmap", "nodeproxy", "afxdp"}, "estimated ≈ 11m33s"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.file, len(tt.datapaths)), func(t *testing.T) {
			src, err := os.ReadFile(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(src, []byte(tt.want)) {
				t.Fatalf("%s does not say %q", tt.file, tt.want)
			}
			sc, err := Parse(tt.file, src)
			if err != nil {
				t.Fatal(err)
			}
			if err := sc.WithDatapaths(tt.datapaths); err != nil {
				t.Fatal(err)
			}
			got := sc.EstimatedDuration().String()
			if !strings.Contains(tt.want, got) {
				t.Errorf("%s with %v: EstimatedDuration() = %s, but the file says %q", tt.file, tt.datapaths, got, tt.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	sc, err := Parse("dir/minimal.yml", []byte("load:\n  rates: [100]\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Scenario{
		Name: "minimal",
		Topology: Topology{Nodes: 2, PodsPerNode: 2, Services: []Service{
			{Name: "echo", Replicas: 1, Port: 8080, Mesh: DefaultMeshPolicy(), ReadinessProbe: DefaultProbe()},
		}},
		Datapaths: []string{"none"},
		Load: Load{
			Service:          "echo",
			Rates:            []int{100},
			Duration:         Duration(10 * time.Second),
			Warmup:           Duration(2 * time.Second),
			Connections:      8,
			RequestSize:      64,
			ResponseSize:     64,
			KeepAlive:        ptr(true),
			Timeout:          Duration(2 * time.Second),
			Calibrate:        ptr(true),
			PacerSpin:        Duration(DefaultPacerSpin),
			KernelTimestamps: ptr(true),
		},
		Repetitions: 1,
		NodeProxy:   NodeProxy{Hops: "both"},
		Provider:    "netns",
	}
	if !reflect.DeepEqual(sc, want) {
		t.Errorf("Parse(minimal) =\n%+v\nwant\n%+v", sc, want)
	}
}

// TestExplicitZeros checks that a field set to its zero value keeps it:
// defaults only fill absent (or null) fields.
func TestExplicitZeros(t *testing.T) {
	src := `
topology:
  services:
    - name: api
      port: 9000
    - name: db
      replicas: 2
load:
  service: db
  rates: [100]
  warmup: 0s
  request_size: 0
  response_size: "1MiB"
  keep_alive: false
  calibrate: false
  duration: ~
`
	sc, err := Parse("zeros.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	l := sc.Load
	if l.Warmup != 0 || l.RequestSize != 0 || l.ResponseSize != 1<<20 || *l.KeepAlive || *l.Calibrate {
		t.Errorf("explicit values lost: %+v", l)
	}
	if l.Duration != Duration(DefaultDuration) || l.Service != "db" {
		t.Errorf("duration %s service %s, want the default duration and db", l.Duration, l.Service)
	}
	dm := DefaultMeshPolicy()
	dp := DefaultProbe()
	want := []Service{{Name: "api", Replicas: 1, Port: 9000, Mesh: dm, ReadinessProbe: dp}, {Name: "db", Replicas: 2, Port: 8080, Mesh: dm, ReadinessProbe: dp}}
	if !reflect.DeepEqual(sc.Topology.Services, want) {
		t.Errorf("services %+v, want %+v", sc.Topology.Services, want)
	}
}

// TestResolvedRoundTrip checks that Resolved's JSON decodes, both as JSON
// and through Parse, back to the same scenario, and keeps its shape in a
// golden file.
func TestResolvedRoundTrip(t *testing.T) {
	for _, file := range []string{"default.yaml", "quick.yaml"} {
		t.Run(strings.TrimSuffix(file, ".yaml"), func(t *testing.T) {
			sc, err := LoadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			b, err := sc.Resolved()
			if err != nil {
				t.Fatal(err)
			}
			var back Scenario
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatalf("decode resolved JSON: %v\n%s", err, b)
			}
			if !reflect.DeepEqual(&back, sc) {
				t.Errorf("json round trip:\n%+v\nwant\n%+v", back, sc)
			}
			again, err := Parse("resolved.json", b)
			if err != nil {
				t.Fatalf("Parse(resolved): %v", err)
			}
			if !reflect.DeepEqual(again, sc) {
				t.Errorf("Parse round trip:\n%+v\nwant\n%+v", again, sc)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, b, "", "  "); err != nil {
				t.Fatal(err)
			}
			pretty.WriteByte('\n')
			golden.Check(t, filepath.Join("testdata", strings.TrimSuffix(file, ".yaml")+".resolved.json"), pretty.Bytes())
		})
	}
}

func TestWithDatapaths(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    []string
		wantErr string
	}{
		{"two", []string{"sidecar", "none"}, []string{"sidecar", "none"}, ""},
		{"spaces trimmed", []string{" none", "afxdp "}, []string{"none", "afxdp"}, ""},
		{"unknown", []string{"none", "istio"}, nil, `unknown datapath "istio" (known: none, sidecar, sockmap, nodeproxy, afxdp)`},
		{"duplicate", []string{"none", "sockmap", "none"}, nil, `datapath "none" is listed twice`},
		{"empty entry", []string{"none", ""}, nil, `entry 2 is empty`},
		{"empty", []string{""}, nil, `must list at least one datapath (known: none, sidecar, sockmap, nodeproxy, afxdp)`},
		{"nil", nil, nil, `must list at least one datapath (known: none, sidecar, sockmap, nodeproxy, afxdp)`},
		{"nodeproxy with services on two engines", []string{"none", "nodeproxy"}, nil,
			`topology.services[1].mesh.engine: "envoy", but topology.services[0].mesh.engine is "builtin": nodeproxy runs one proxy per node for every service, so it runs one engine; make the services agree (or use "auto"), or leave nodeproxy out of datapaths`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc, err := Parse("x.yaml", []byte("datapaths: [nodeproxy]\nload: {rates: [1]}\n"))
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(tt.name, "nodeproxy with") {
				sc.Topology.Services = append(sc.Topology.Services, sc.Topology.Services[0])
				sc.Topology.Services[0].Mesh.Engine = "builtin"
				sc.Topology.Services[1].Name, sc.Topology.Services[1].Mesh.Engine = "other", "envoy"
			}
			if err != nil {
				t.Fatal(err)
			}
			err = sc.WithDatapaths(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("WithDatapaths(%q) = %v, want %q", tt.in, err, tt.wantErr)
				}
				if !slices.Equal(sc.Datapaths, []string{"nodeproxy"}) {
					t.Errorf("datapaths changed to %v on error", sc.Datapaths)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(sc.Datapaths, tt.want) {
				t.Errorf("datapaths %v, want %v", sc.Datapaths, tt.want)
			}
		})
	}
}

func TestPlan(t *testing.T) {
	sc, err := Parse("x.yaml", []byte(`
datapaths: [none, sidecar]
repetitions: 2
load:
  rates: [10, 20]
  duration: 4s
  warmup: 1s
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Step{
		{"none", 1, 10}, {"none", 1, 20}, {"none", 2, 10}, {"none", 2, 20},
		{"sidecar", 1, 10}, {"sidecar", 1, 20}, {"sidecar", 2, 10}, {"sidecar", 2, 20},
	}
	if got := sc.Plan(); !slices.Equal(got, want) {
		t.Errorf("Plan() = %v, want %v", got, want)
	}
	// 8 steps × (1s + 4s + StepOverhead) + 4 cycles × (CycleOverhead + 4
	// pods × PodOverhead) + 2 sidecar cycles × 4 pods × SidecarOverhead +
	// calibration (4s + 1s + StepOverhead), to the second.
	want0 := 8*(5*time.Second+StepOverhead) + 4*(CycleOverhead+4*PodOverhead) + 2*4*SidecarOverhead + 5*time.Second + StepOverhead
	if got := sc.EstimatedDuration(); got != want0.Round(time.Second) {
		t.Errorf("EstimatedDuration() = %s, want %s", got, want0.Round(time.Second))
	}
	*sc.Load.Calibrate = false
	if got, want := sc.EstimatedDuration(), (want0 - 5*time.Second - StepOverhead).Round(time.Second); got != want {
		t.Errorf("EstimatedDuration() without calibration = %s, want %s", got, want)
	}
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		yaml    string
		want    ByteSize
		wantErr bool
	}{
		{"64", 64, false},
		{`"64"`, 64, false},
		{"64B", 64, false},
		{"32KiB", 32 << 10, false},
		{"1MiB", 1 << 20, false},
		{"4KB", 4000, false},
		{"4 kb", 4000, false},
		{"2MB", 2000000, false},
		{"16MiB", 16 << 20, false},
		{"0", 0, false},
		{"1.5KiB", 0, true},
		{"KiB", 0, true},
		{"4XB", 0, true},
		{"-1KiB", 0, true},
		{"true", 0, true},
		{"[1]", 0, true},
		{"99999999999GiB", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.yaml, func(t *testing.T) {
			sc, err := Parse("x.yaml", []byte("load:\n  rates: [1]\n  request_size: "+tt.yaml+"\n"))
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), "x.yaml:3: load.request_size: want a size such as") {
					t.Fatalf("request_size %s: error %v, want a located size error", tt.yaml, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if sc.Load.RequestSize != tt.want {
				t.Errorf("request_size %s = %d, want %d", tt.yaml, sc.Load.RequestSize, tt.want)
			}
		})
	}
}

func TestByteSizeJSON(t *testing.T) {
	b, err := json.Marshal(ByteSize(32 << 10))
	if err != nil || string(b) != "32768" {
		t.Errorf("Marshal = %s, %v, want 32768", b, err)
	}
	for in, want := range map[string]ByteSize{`32768`: 32 << 10, `"32KiB"`: 32 << 10} {
		var got ByteSize
		if err := json.Unmarshal([]byte(in), &got); err != nil || got != want {
			t.Errorf("Unmarshal(%s) = %d, %v, want %d", in, got, err, want)
		}
	}
	if got, want := ByteSize(32<<10).String(), "32KiB"; got != want {
		t.Errorf("String() = %s, want %s", got, want)
	}
	if got, err := ParseByteSize("1GiB"); err != nil || got != 1<<30 {
		t.Errorf("ParseByteSize(1GiB) = %d, %v", got, err)
	}
	if got, want := ByteSize(1000).String(), "1000B"; got != want {
		t.Errorf("String() = %s, want %s", got, want)
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{10 * time.Second, "10s"},
		{90 * time.Second, "1m30s"},
		{10 * time.Minute, "10m"},
		{time.Hour, "1h"},
		{time.Hour + time.Second, "1h0m1s"},
		{500 * time.Millisecond, "500ms"},
		{0, "0s"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := Duration(tt.d).String(); got != tt.want {
				t.Errorf("String() = %s, want %s", got, tt.want)
			}
			b, err := json.Marshal(Duration(tt.d))
			if err != nil || string(b) != `"`+tt.want+`"` {
				t.Errorf("Marshal = %s, %v", b, err)
			}
			var back Duration
			if err := json.Unmarshal(b, &back); err != nil || time.Duration(back) != tt.d {
				t.Errorf("Unmarshal(%s) = %s, %v", b, back, err)
			}
		})
	}
	var d Duration
	if err := json.Unmarshal([]byte(`10`), &d); err == nil {
		t.Error("Unmarshal(10) succeeded, want an error: durations are strings")
	}
}

// TestValidate checks validation of a scenario built in Go, without a file.
func TestValidate(t *testing.T) {
	sc, err := Parse("x.yaml", []byte("load: {rates: [1]}"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Validate(); err != nil {
		t.Fatalf("Validate() of a parsed scenario: %v", err)
	}
	sc.Topology.Nodes = 17
	sc.Load.Rates = append(sc.Load.Rates, 1)
	err = sc.Validate()
	want := "topology.nodes: must be between 1 and 16, got 17\nload.rates[1]: duplicate rate 1 (also load.rates[0])"
	if err == nil || err.Error() != want {
		t.Errorf("Validate() = %v, want %q", err, want)
	}
}

// TestDecoderGeneric decodes kinds of fields the scenario types do not use
// yet, as later fields (chaos timeline, proxy knobs) will.
func TestDecoderGeneric(t *testing.T) {
	type Breaker struct {
		MaxConnections uint32 `yaml:"max_connections"`
	}
	type Common struct {
		Budget float64 `yaml:"budget"`
	}
	type Knobs struct {
		Common    `yaml:",inline"`
		Policy    string             `yaml:"lb_policy"`
		Breaker   *Breaker           `yaml:"circuit_breaker"`
		Retries   map[string]int     `yaml:"retries"`
		Timeline  []map[string]int64 `yaml:"timeline"`
		After     Duration           `yaml:"after"`
		Untouched *Breaker           `yaml:"untouched"`
		skipped   int
		Ignored   int `yaml:"-"`
	}
	src := `
budget: 2
lb_policy: maglev
circuit_breaker: {max_connections: 100}
retries: {connect: 3, reset: 1}
timeline:
  - {at: 5}
  - at: 7
after: 1m
`
	p := &problems{file: "k.yaml", lines: map[string]int{}}
	root, err := parseYAML(p, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var k Knobs
	d := &decoder{problems: p, set: map[string]bool{}, root: reflect.TypeOf(k)}
	d.decode(root, reflect.ValueOf(&k).Elem(), "")
	if err := p.err(); err != nil {
		t.Fatal(err)
	}
	want := Knobs{
		Common:   Common{Budget: 2},
		Policy:   "maglev",
		Breaker:  &Breaker{MaxConnections: 100},
		Retries:  map[string]int{"connect": 3, "reset": 1},
		Timeline: []map[string]int64{{"at": 5}, {"at": 7}},
		After:    Duration(time.Minute),
	}
	if !reflect.DeepEqual(k, want) {
		t.Errorf("decoded %+v, want %+v", k, want)
	}
	if got, want := d.lines["timeline[1].at"], 8; got != want {
		t.Errorf("line of timeline[1].at = %d, want %d", got, want)
	}
	if !d.set["circuit_breaker.max_connections"] || d.set["untouched"] {
		t.Errorf("set = %v", d.set)
	}

	bad := "circuit_breaker: {max_connections: -1}\nskipped: 1\nIgnored: 2\n"
	p = &problems{file: "k.yaml", lines: map[string]int{}}
	root, err = parseYAML(p, []byte(bad))
	if err != nil {
		t.Fatal(err)
	}
	d = &decoder{problems: p, set: map[string]bool{}}
	d.decode(root, reflect.ValueOf(&Knobs{}).Elem(), "")
	wantErr := strings.Join([]string{
		`k.yaml:1: circuit_breaker.max_connections: want a non-negative integer, got -1`,
		`k.yaml:2: unknown field "skipped" at top level (known fields: budget, lb_policy, circuit_breaker, retries, timeline, after, untouched)`,
		`k.yaml:3: unknown field "Ignored" at top level (known fields: budget, lb_policy, circuit_breaker, retries, timeline, after, untouched)`,
	}, "\n")
	if err := p.err(); err == nil || err.Error() != wantErr {
		t.Errorf("error:\n%v\nwant:\n%s", err, wantErr)
	}
}

func TestAliases(t *testing.T) {
	src := `
topology:
  services:
    - &svc {name: a, replicas: 1}
load:
  rates: &rates [100, 200]
  service: a
`
	sc, err := Parse("a.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sc.Load.Rates, []int{100, 200}) {
		t.Errorf("rates %v", sc.Load.Rates)
	}
	_, err = Parse("a.yaml", []byte("base: &b {nodes: 1}\ntopology:\n  <<: *b\n"))
	if err == nil || !strings.Contains(err.Error(), `a.yaml:1: unknown field "base" at top level`) ||
		!strings.Contains(err.Error(), "a.yaml:3: topology: merge keys (<<) are not supported") {
		t.Errorf("merge key error = %v", err)
	}
}

// TestExamplesLoad loads every scenario shipped in this folder: each must
// be valid as written, with an estimate of how long it runs.
func TestExamplesLoad(t *testing.T) {
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios found (%v)", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(f, ".yaml"), func(t *testing.T) {
			sc, err := LoadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if sc.Name != strings.TrimSuffix(f, ".yaml") {
				t.Errorf("name %q, want the file's base name", sc.Name)
			}
			t.Logf("%s: %d datapaths, estimated %s", f, len(sc.Datapaths), sc.EstimatedDuration())
		})
	}
}

func TestNodeProxyEngine(t *testing.T) {
	tests := []struct {
		name             string
		engines          []string
		want             string
		by, wantConflict int
	}{
		{"none", nil, "auto", -1, -1},
		{"all auto", []string{"auto", ""}, "auto", -1, -1},
		{"one names it", []string{"auto", "envoy", "auto"}, "envoy", 1, -1},
		{"agree", []string{"builtin", "auto", "builtin"}, "builtin", 0, -1},
		{"disagree", []string{"auto", "builtin", "auto", "envoy"}, "builtin", 1, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, by, c := NodeProxyEngine(tt.engines)
			if got != tt.want || by != tt.by || c != tt.wantConflict {
				t.Errorf("NodeProxyEngine(%q) = %q, %d, %d; want %q, %d, %d", tt.engines, got, by, c, tt.want, tt.by, tt.wantConflict)
			}
		})
	}
}

// A proxy datapath's label may name its engine; others may not, and the
// engine must be known.
func TestDatapathLabels(t *testing.T) {
	base := "topology: {nodes: 1, pods_per_node: 2, services: [{name: echo, replicas: 1}]}\nload: {rates: [100], duration: 2s, warmup: 1s}\n"
	if _, err := Parse("ok.yaml", []byte(base+"datapaths: [none, sidecar, sidecar/haproxy, sockmap/builtin, nodeproxy/haproxy]\n")); err != nil {
		t.Errorf("labels with engines: %v", err)
	}
	for _, tc := range []struct{ list, want string }{
		{"[none/haproxy]", `datapath "none/haproxy": only sidecar, sockmap, nodeproxy take an engine`},
		{"[sidecar/nginx]", `datapath "sidecar/nginx": only sidecar, sockmap, nodeproxy take an engine after a slash, one of builtin, envoy, haproxy`},
		{"[sidecar/haproxy, sidecar/haproxy]", `datapath "sidecar/haproxy" is listed twice`},
	} {
		_, err := Parse("bad.yaml", []byte(base+"datapaths: "+tc.list+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("datapaths %s: %v, want %q", tc.list, err, tc.want)
		}
	}
}

// TestExternalEngines checks which engines a run needs besides meshbench:
// those of datapath labels, and the services' mesh.engine for a proxied
// datapath whose label names none.
func TestExternalEngines(t *testing.T) {
	for _, tt := range []struct {
		name, src string
		want      []string
	}{
		{"builtin and auto only", "datapaths: [none, sidecar/builtin, nodeproxy]\n", nil},
		{"labels", "datapaths: [sidecar/haproxy, nodeproxy/haproxy, sockmap/builtin]\n", []string{"haproxy"}},
		{"a service's engine, for a datapath without a label", "datapaths: [none, sidecar]\ntopology:\n  services:\n    - {name: echo, replicas: 2, mesh: {engine: envoy}}\n", []string{"envoy"}},
		{"a service's engine, but no proxied datapath", "datapaths: [none, afxdp]\ntopology:\n  services:\n    - {name: echo, replicas: 2, mesh: {engine: haproxy}}\n", nil},
		{"both, sorted", "datapaths: [sidecar/haproxy, sockmap]\ntopology:\n  services:\n    - {name: echo, replicas: 2, mesh: {engine: envoy}}\n", []string{"envoy", "haproxy"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sc, err := Parse("x.yaml", []byte("load:\n  rates: [100]\n"+tt.src))
			if err != nil {
				t.Fatal(err)
			}
			if got := sc.ExternalEngines(); !slices.Equal(got, tt.want) {
				t.Errorf("ExternalEngines() = %v, want %v", got, tt.want)
			}
		})
	}
}
