package scenarios

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshbench/meshbench/datapaths/catalog"

	"gopkg.in/yaml.v3"
)

// Defaults applied to fields a scenario file leaves out (or sets to null).
// A field that is present keeps its value, even zero, and is validated.
const (
	DefaultNodes        = 2
	DefaultPodsPerNode  = 2
	DefaultService      = "echo"
	DefaultReplicas     = 1
	DefaultPort         = 8080
	DefaultConnections  = 8
	DefaultDuration     = 10 * time.Second
	DefaultWarmup       = 2 * time.Second
	DefaultTimeout      = 2 * time.Second
	DefaultRequestSize  = 64
	DefaultResponseSize = 64
	DefaultRepetitions  = 1
	DefaultDatapath     = catalog.None
	DefaultPacerSpin    = 200 * time.Microsecond
	// Readiness probe defaults: Kubernetes' own are a 10 s period and 3
	// failures; these are the tighter settings a mesh user tunes to, so that
	// a kill is noticed within a second.
	DefaultProbePeriod    = time.Second
	DefaultProbeTimeout   = time.Second
	DefaultProbeThreshold = 1
)

// LoadFile reads, decodes, completes with defaults and validates the scenario
// file at path. Errors name the file and line of each problem. (It is not
// named Load because Load is the type of a scenario's load section.)
func LoadFile(path string) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes data, a scenario file's contents, completes it with
// defaults and validates it. name is the file's path: it prefixes every
// error ("name:line: field: problem") and its base name without extension
// is the scenario's default Name. Every problem found is returned, joined
// and sorted by line (at most MaxErrors); each is an *Error.
func Parse(name string, data []byte) (*Scenario, error) {
	p := &problems{file: name, lines: map[string]int{}}
	root, err := parseYAML(p, data)
	if err != nil {
		return nil, err
	}
	s := &Scenario{}
	d := &decoder{problems: p, set: map[string]bool{}, root: reflect.TypeOf(s)}
	d.decode(root, reflect.ValueOf(s).Elem(), "")
	if err := p.err(); err != nil {
		return nil, err
	}
	s.applyDefaults(defaultName(name), func(path string) bool { return d.set[path] })
	s.validate(p)
	if err := p.err(); err != nil {
		return nil, err
	}
	return s, nil
}

// yamlLine matches the line yaml.v3 puts in its syntax errors.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// parseYAML returns the top-level mapping of the single document in data.
func parseYAML(p *problems, data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.addLinef(1, "", "empty scenario file: want a mapping of fields such as \"topology\", \"load\" and \"datapaths\"")
			return nil, p.err()
		}
		return nil, syntaxError(p, err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			p.addLinef(1, "", "empty scenario file: want a mapping of fields such as \"topology\", \"load\" and \"datapaths\"")
			return nil, p.err()
		}
		root = root.Content[0]
	}
	root = resolveAlias(root)
	if root.Kind != yaml.MappingNode {
		if isNull(root) {
			p.addLinef(root.Line, "", "empty scenario file: want a mapping of fields such as \"topology\", \"load\" and \"datapaths\"")
		} else {
			p.addLinef(root.Line, "", "top level must be a mapping of fields, got %s", describe(root))
		}
		return nil, p.err()
	}
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		p.addLinef(next.Line, "", "more than one YAML document: a scenario file holds exactly one")
		return nil, p.err()
	} else if !errors.Is(err, io.EOF) {
		return nil, syntaxError(p, err)
	}
	p.lines[""] = root.Line
	return root, nil
}

// yamlParserErrors are the messages of yaml.v3's parser (as opposed to
// its scanner). yaml.v3 v3.0.1 reports their line 0-based, one less than
// the line it means.
var yamlParserErrors = []string{
	"did not find expected key",
	"did not find expected node content",
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"did not find expected '-' indicator",
	"did not find expected <document start>",
	"found undefined tag handle",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found duplicate %TAG directive",
}

// syntaxError turns yaml.v3's "yaml: line N: msg" into a located Error.
func syntaxError(p *problems, err error) error {
	msg := err.Error()
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
		if slices.Contains(yamlParserErrors, msg) {
			line++
		}
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	p.addLinef(line, "", "invalid YAML: %s", msg)
	return p.err()
}

// defaultName is the scenario name a file name implies: its base name
// without extension.
func defaultName(file string) string {
	base := filepath.Base(file)
	base = strings.TrimSuffix(base, filepath.Ext(base))
	if base == "" || base == "." || base == string(filepath.Separator) {
		return "scenario"
	}
	return base
}

// applyDefaults fills the fields for which set reports false (absent from
// the file) with their defaults.
func (s *Scenario) applyDefaults(name string, set func(path string) bool) {
	if !set("name") {
		s.Name = name
	}
	t := &s.Topology
	if !set("topology.nodes") {
		t.Nodes = DefaultNodes
	}
	if !set("topology.pods_per_node") {
		t.PodsPerNode = DefaultPodsPerNode
	}
	if len(t.Services) == 0 {
		t.Services = []Service{{Name: DefaultService}}
	}
	for i := range t.Services {
		svc := &t.Services[i]
		p := indexPath("topology.services", i)
		if !set(p + ".replicas") {
			svc.Replicas = DefaultReplicas
		}
		if !set(p + ".port") {
			svc.Port = DefaultPort
		}
		svc.Mesh.defaults()
		pr := &svc.ReadinessProbe
		if !set(p + ".readiness_probe.period") {
			pr.Period = Duration(DefaultProbePeriod)
		}
		if !set(p + ".readiness_probe.timeout") {
			pr.Timeout = Duration(min(DefaultProbeTimeout, time.Duration(pr.Period)))
		}
		if !set(p + ".readiness_probe.failure_threshold") {
			pr.FailureThreshold = DefaultProbeThreshold
		}
		if !set(p + ".readiness_probe.success_threshold") {
			pr.SuccessThreshold = DefaultProbeThreshold
		}
	}
	if !set("datapaths") {
		s.Datapaths = []string{DefaultDatapath}
	}
	if !set("repetitions") {
		s.Repetitions = DefaultRepetitions
	}
	s.NodeProxy.defaults()
	if !set("provider") {
		s.Provider = KnownProviders[0]
	}
	l := &s.Load
	if !set("load.service") {
		l.Service = t.Services[0].Name
	}
	if !set("load.duration") {
		l.Duration = Duration(DefaultDuration)
	}
	if !set("load.warmup") {
		l.Warmup = Duration(DefaultWarmup)
	}
	if !set("load.connections") {
		l.Connections = DefaultConnections
	}
	if !set("load.request_size") {
		l.RequestSize = DefaultRequestSize
	}
	if !set("load.response_size") {
		l.ResponseSize = DefaultResponseSize
	}
	if !set("load.timeout") {
		l.Timeout = Duration(DefaultTimeout)
	}
	if l.KeepAlive == nil {
		l.KeepAlive = ptr(true)
	}
	if l.Calibrate == nil {
		l.Calibrate = ptr(true)
	}
	if !set("load.pacer_spin") {
		l.PacerSpin = Duration(DefaultPacerSpin)
	}
	if l.KernelTimestamps == nil {
		l.KernelTimestamps = ptr(true)
	}
}

func ptr[T any](v T) *T { return &v }

// DefaultProbe returns the readiness probe a service gets when its file
// sets none.
func DefaultProbe() Probe {
	return Probe{Period: Duration(DefaultProbePeriod), Timeout: Duration(DefaultProbeTimeout),
		FailureThreshold: DefaultProbeThreshold, SuccessThreshold: DefaultProbeThreshold}
}
