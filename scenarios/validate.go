package scenarios

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/meshbench/meshbench/datapaths/catalog"
	"github.com/meshbench/meshbench/internal/ports"
)

// KnownDatapaths are the datapath names a scenario may list (the
// catalog's), in the order reports present them.
var KnownDatapaths = catalog.Names()

// ReservedPorts are the ports the harness and its proxies listen on inside
// pods (see package ports); services may not use them.
var ReservedPorts = ports.Reserved()

// Limits of the values a scenario may set, inclusive.
const (
	MaxNodes       = 16
	MaxPodsPerNode = 64
	MaxRate        = 200000 // requests per second
	MinDuration    = time.Second
	MaxDuration    = time.Hour
	MaxWarmup      = 10 * time.Minute
	MaxConnections = 1024
	MaxBodySize    = 16 << 20 // bytes, request and response
	MaxTimeout     = 60 * time.Second
	MaxPacerSpin   = time.Millisecond
	MaxRepetitions = 100
	maxNameLen     = 128
	maxServiceName = 63
	maxReplicas    = MaxNodes * MaxPodsPerNode
)

// dnsLabel is an RFC 1123 label in lower case.
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// Validate reports every impossible value in s, joined. It expects the
// defaults to be filled in, as Parse and Load do; errors carry field paths
// but no file or line.
func (s *Scenario) Validate() error {
	p := &problems{lines: map[string]int{}}
	s.validate(p)
	return p.err()
}

func (s *Scenario) validate(p *problems) {
	if s.Name == "" {
		p.addf("name", "must not be empty")
	} else if len(s.Name) > maxNameLen || strings.IndexFunc(s.Name, unicode.IsControl) >= 0 {
		p.addf("name", "must be at most %d printable characters", maxNameLen)
	}
	s.Topology.validate(p)
	s.Load.validate(p, s.Topology.Services)
	checkDatapaths(s.Datapaths, func(i int, format string, args ...any) {
		path := "datapaths"
		if i >= 0 {
			path = indexPath(path, i)
		}
		p.addf(path, format, args...)
	})
	checkRange(p, "repetitions", s.Repetitions, 1, MaxRepetitions)
	s.validateChaos(p)
	s.NodeProxy.validate(p)
	s.nodeProxyEngineConflict(p.addf)
	if !slices.Contains(KnownProviders, s.Provider) {
		p.addf("provider", "unknown provider %q (want one of %s)", s.Provider, strings.Join(KnownProviders, ", "))
	}
}

func (t *Topology) validate(p *problems) {
	okNodes := checkRange(p, "topology.nodes", t.Nodes, 1, MaxNodes)
	okPods := checkRange(p, "topology.pods_per_node", t.PodsPerNode, 1, MaxPodsPerNode)
	// The client takes pod 0 of node 0; each replica takes one other pod.
	capacity := t.Nodes*t.PodsPerNode - 1
	total, overflowed := 0, false
	names := map[string]int{}
	for i, svc := range t.Services {
		path := indexPath("topology.services", i)
		switch {
		case svc.Name == "":
			p.addf(path+".name", "must not be empty")
		case len(svc.Name) > maxServiceName || !dnsLabel.MatchString(svc.Name):
			p.addf(path+".name", "%q is not a DNS label: use at most %d lower-case letters, digits and '-', starting and ending with a letter or digit", svc.Name, maxServiceName)
		default:
			if first, dup := names[svc.Name]; dup {
				p.addf(path+".name", "duplicate service %q (also topology.services[%d])", svc.Name, first)
			} else {
				names[svc.Name] = i
			}
		}
		if checkRange(p, path+".replicas", svc.Replicas, 1, maxReplicas) {
			total += svc.Replicas
			if okNodes && okPods && total > capacity && !overflowed {
				overflowed = true
				p.addf(path+".replicas", "total replicas %d exceed the %d pods available to services (%d nodes × %d pods per node, less the client's pod)",
					total, capacity, t.Nodes, t.PodsPerNode)
			}
		}
		svc.Mesh.validate(p, path+".mesh")
		svc.ReadinessProbe.validate(p, path+".readiness_probe")
		if checkRange(p, path+".port", svc.Port, 1, 65535) && slices.Contains(ReservedPorts, svc.Port) {
			p.addf(path+".port", "port %d is reserved by the harness (reserved: %s)", svc.Port, joinInts(ReservedPorts))
		}
	}
}

func (l *Load) validate(p *problems, services []Service) {
	var names []string
	for _, s := range services {
		if !slices.Contains(names, s.Name) {
			names = append(names, s.Name)
		}
	}
	if !slices.Contains(names, l.Service) {
		p.addf("load.service", "no service named %q (services: %s)", l.Service, strings.Join(names, ", "))
	}
	if len(l.Rates) == 0 {
		p.addf("load.rates", "must list at least one rate in requests per second")
	}
	seen := map[int]int{}
	for i, r := range l.Rates {
		path := indexPath("load.rates", i)
		if !checkRange(p, path, r, 1, MaxRate) {
			continue
		}
		if first, dup := seen[r]; dup {
			p.addf(path, "duplicate rate %d (also load.rates[%d])", r, first)
			continue
		}
		seen[r] = i
	}
	checkDuration(p, "load.duration", l.Duration, MinDuration, MaxDuration)
	checkDuration(p, "load.warmup", l.Warmup, 0, MaxWarmup)
	checkDuration(p, "load.pacer_spin", l.PacerSpin, 0, MaxPacerSpin)
	if l.Timeout <= 0 {
		p.addf("load.timeout", "must be > 0, got %s", l.Timeout)
	} else {
		checkDuration(p, "load.timeout", l.Timeout, 0, MaxTimeout)
	}
	checkRange(p, "load.connections", l.Connections, 1, MaxConnections)
	checkSize(p, "load.request_size", l.RequestSize)
	checkSize(p, "load.response_size", l.ResponseSize)
}

// Limits of a readiness probe.
const (
	MinProbePeriod    = 10 * time.Millisecond
	MaxProbePeriod    = time.Minute
	MaxProbeThreshold = 100
)

func (pr *Probe) validate(p *problems, path string) {
	checkDuration(p, path+".period", pr.Period, MinProbePeriod, MaxProbePeriod)
	if pr.Timeout <= 0 || pr.Timeout > pr.Period {
		p.addf(path+".timeout", "must be > 0 and at most the period %s, got %s", pr.Period, pr.Timeout)
	}
	checkRange(p, path+".failure_threshold", pr.FailureThreshold, 1, MaxProbeThreshold)
	checkRange(p, path+".success_threshold", pr.SuccessThreshold, 1, MaxProbeThreshold)
}

// checkDatapaths reports, through add, an empty list (i = -1), unknown
// names and duplicates (i = the entry's index).
func checkDatapaths(list []string, add func(i int, format string, args ...any)) {
	if len(list) == 0 {
		add(-1, "must list at least one datapath (known: %s)", strings.Join(KnownDatapaths, ", "))
		return
	}
	seen := map[string]int{}
	for i, dp := range list {
		base, engine := catalog.Split(dp)
		if !slices.Contains(KnownDatapaths, base) {
			add(i, "unknown datapath %q (known: %s)", dp, strings.Join(KnownDatapaths, ", "))
			continue
		}
		if strings.Contains(dp, "/") && (!slices.Contains(catalog.Proxied(), base) || !slices.Contains(catalog.LabelEngines, engine)) {
			add(i, "datapath %q: only %s take an engine after a slash, one of %s (for example sidecar/haproxy)",
				dp, strings.Join(catalog.Proxied(), ", "), strings.Join(catalog.LabelEngines, ", "))
			continue
		}
		if _, dup := seen[dp]; dup {
			add(i, "datapath %q is listed twice", dp)
			continue
		}
		seen[dp] = i
	}
}

// checkRange reports v outside [lo, hi] and says whether v is inside.
func checkRange(p *problems, path string, v, lo, hi int) bool {
	if v < lo || v > hi {
		p.addf(path, "must be between %d and %d, got %d", lo, hi, v)
		return false
	}
	return true
}

func checkDuration(p *problems, path string, d Duration, lo, hi time.Duration) {
	if time.Duration(d) < lo || time.Duration(d) > hi {
		p.addf(path, "must be between %s and %s, got %s", Duration(lo), Duration(hi), d)
	}
}

func checkSize(p *problems, path string, b ByteSize) {
	if b < 0 || b > MaxBodySize {
		p.addf(path, "must be between 0 and %s, got %s", ByteSize(MaxBodySize), b)
	}
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ", ")
}

// WithDatapaths replaces the scenario's datapaths, as a command-line flag
// does, after checking the list as a scenario file's would be: non-empty,
// known names, no duplicates, none that the scenario's chaos entries rule
// out (see checkChaosDatapaths). Surrounding spaces are trimmed. On error s is
// unchanged; the errors name no file, so that the caller can prefix the
// flag's name.
func (s *Scenario) WithDatapaths(list []string) error {
	names := make([]string, len(list))
	for i, n := range list {
		names[i] = strings.TrimSpace(n)
	}
	var errs []error
	add := func(i int, format string, args ...any) {
		errs = append(errs, &Error{Msg: fmt.Sprintf(format, args...)})
	}
	for i, n := range names {
		if n == "" && len(names) > 1 {
			add(i, "entry %d is empty", i+1)
		}
	}
	if len(errs) == 0 {
		if len(names) == 1 && names[0] == "" {
			names = nil
		}
		checkDatapaths(names, add)
	}
	if len(errs) == 0 {
		with := *s
		with.Datapaths = names
		addAt := func(path, format string, args ...any) {
			errs = append(errs, &Error{Path: path, Msg: fmt.Sprintf(format, args...)})
		}
		with.checkChaosDatapaths(addAt)
		with.nodeProxyEngineConflict(addAt)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	s.Datapaths = names
	return nil
}
