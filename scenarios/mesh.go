package scenarios

import (
	"slices"
	"strings"
	"time"

	"github.com/meshbench/meshbench/datapaths/catalog"
)

// MeshPolicy is how a proxy-based datapath treats one service: the settings an
// Istio DestinationRule and VirtualService would carry.
type MeshPolicy struct {
	// Engine runs the proxies of the service's pods: "auto" (default: Envoy
	// when an envoy binary is found, else builtin), "builtin", "envoy" or
	// "haproxy" (HAProxy, configured from the same xDS).
	Engine string `yaml:"engine" json:"engine"`
	// Protocol is "http" (default: L7 routing, retries, per-request LB) or
	// "tcp" (L4 passthrough, per-connection LB).
	Protocol string `yaml:"protocol" json:"protocol"`
	// LBPolicy is ROUND_ROBIN (default), LEAST_REQUEST (power of two
	// choices), MAGLEV or RANDOM, as Envoy names them.
	LBPolicy string `yaml:"lb_policy" json:"lb_policy"`
	// HashHeader is the request header MAGLEV hashes; empty: the source
	// address.
	HashHeader      string          `yaml:"hash_header" json:"hash_header,omitempty"`
	CircuitBreakers CircuitBreakers `yaml:"circuit_breakers" json:"circuit_breakers"`
	Retries         Retries         `yaml:"retries" json:"retries"`
	// Timeout of a whole request, retries included; 0s: none.
	Timeout Duration `yaml:"timeout" json:"timeout"`
}

// CircuitBreakers are Envoy's cluster thresholds; 0 means Envoy's default
// (1024 connections, pending requests and requests; 3 retries).
type CircuitBreakers struct {
	MaxConnections     int `yaml:"max_connections" json:"max_connections"`
	MaxPendingRequests int `yaml:"max_pending_requests" json:"max_pending_requests"`
	MaxRequests        int `yaml:"max_requests" json:"max_requests"`
	MaxRetries         int `yaml:"max_retries" json:"max_retries"`
}

// Retries say when a failed request is tried again.
type Retries struct {
	// Attempts after the first try; 0: none (default).
	Attempts int `yaml:"attempts" json:"attempts"`
	// PerTryTimeout bounds each try; 0s: none.
	PerTryTimeout Duration `yaml:"per_try_timeout" json:"per_try_timeout"`
	// RetryOn is Envoy's retry_on list; default "connect-failure,5xx".
	RetryOn string `yaml:"retry_on" json:"retry_on"`
}

// Mesh values a scenario may use.
var (
	Engines    = []string{"auto", "builtin", "envoy", "haproxy"}
	Protocols  = []string{"http", "tcp"}
	LBPolicies = []string{"ROUND_ROBIN", "LEAST_REQUEST", "MAGLEV", "RANDOM"}
	RetryOns   = []string{"5xx", "connect-failure", "reset", "gateway-error", "retriable-4xx", "refused-stream"}
)

// maxThreshold bounds circuit-breaker thresholds and retry attempts.
const maxThreshold = 1 << 20

// DefaultMeshPolicy returns the mesh policy of a service that sets none.
func DefaultMeshPolicy() MeshPolicy {
	var m MeshPolicy
	m.defaults()
	return m
}

func (m *MeshPolicy) defaults() {
	if m.Engine == "" {
		m.Engine = "auto"
	}
	if m.Protocol == "" {
		m.Protocol = "http"
	}
	if m.LBPolicy == "" {
		m.LBPolicy = "ROUND_ROBIN"
	}
	if m.Retries.RetryOn == "" {
		m.Retries.RetryOn = "connect-failure,5xx"
	}
}

func (m *MeshPolicy) validate(p *problems, path string) {
	oneOf := func(field, v string, allowed []string) {
		if !slices.Contains(allowed, v) {
			p.addf(path+"."+field, "unknown value %q (want one of %s)", v, strings.Join(allowed, ", "))
		}
	}
	oneOf("engine", m.Engine, Engines)
	oneOf("protocol", m.Protocol, Protocols)
	oneOf("lb_policy", m.LBPolicy, LBPolicies)
	if m.HashHeader != "" && m.LBPolicy != "MAGLEV" {
		p.addf(path+".hash_header", "only MAGLEV hashes a header (lb_policy is %s)", m.LBPolicy)
	}
	cb := path + ".circuit_breakers"
	checkRange(p, cb+".max_connections", m.CircuitBreakers.MaxConnections, 0, maxThreshold)
	checkRange(p, cb+".max_pending_requests", m.CircuitBreakers.MaxPendingRequests, 0, maxThreshold)
	checkRange(p, cb+".max_requests", m.CircuitBreakers.MaxRequests, 0, maxThreshold)
	checkRange(p, cb+".max_retries", m.CircuitBreakers.MaxRetries, 0, maxThreshold)
	checkRange(p, path+".retries.attempts", m.Retries.Attempts, 0, 100)
	if t := time.Duration(m.Retries.PerTryTimeout); t < 0 || t > MaxTimeout {
		p.addf(path+".retries.per_try_timeout", "must be between 0s and %s, got %s", MaxTimeout, t)
	}
	for _, on := range strings.Split(m.Retries.RetryOn, ",") {
		if !slices.Contains(RetryOns, strings.TrimSpace(on)) {
			p.addf(path+".retries.retry_on", "unknown retry condition %q (want a comma list of %s)", on, strings.Join(RetryOns, ", "))
		}
	}
	if t := time.Duration(m.Timeout); t < 0 || t > MaxTimeout {
		p.addf(path+".timeout", "must be between 0s and %s, got %s", MaxTimeout, t)
	}
	if m.Protocol == "tcp" && m.Retries.Attempts > 0 {
		p.addf(path+".retries.attempts", "TCP services cannot be retried per request")
	}
}

// NodeProxy configures the per-node proxy datapath.
type NodeProxy struct {
	// Hops is "both" (default: the source node's proxy hands the request
	// to the destination node's proxy, which delivers it to the pod, as
	// Istio ambient's ztunnels do) or "source" (the source node's proxy
	// connects straight to the pod).
	Hops string `yaml:"hops" json:"hops"`
}

// NodeProxyHops are the values of nodeproxy.hops.
var NodeProxyHops = []string{"both", "source"}

func (n *NodeProxy) defaults() {
	if n.Hops == "" {
		n.Hops = "both"
	}
}

func (n *NodeProxy) validate(p *problems) {
	if !slices.Contains(NodeProxyHops, n.Hops) {
		p.addf("nodeproxy.hops", "unknown value %q (want one of %s)", n.Hops, strings.Join(NodeProxyHops, ", "))
	}
}

// NodeProxyEngine returns the engine the nodeproxy datapath runs for
// services whose mesh.engine values are engines, in topology order. One
// proxy per node serves every service, so it runs one engine: the one the
// services name ("auto" defers to the others), or "auto" when none names
// one. When two services name different engines, conflict is the index of
// the later one and by the index of the first service that named an engine;
// otherwise conflict is -1.
func NodeProxyEngine(engines []string) (engine string, by, conflict int) {
	engine, by = "auto", -1
	for i, e := range engines {
		if e == "" || e == "auto" {
			continue
		}
		if by < 0 {
			engine, by = e, i
			continue
		}
		if e != engine {
			return engine, by, i
		}
	}
	return engine, by, -1
}

// nodeProxyEngineConflict checks, when nodeproxy is among the datapaths,
// that the services agree on one engine (NodeProxyEngine), and reports the
// disagreement at the field that breaks it.
func (s *Scenario) nodeProxyEngineConflict(add func(path, format string, args ...any)) {
	if !slices.Contains(s.Datapaths, catalog.NodeProxy) {
		return
	}
	engines := make([]string, len(s.Topology.Services))
	for i, svc := range s.Topology.Services {
		engines[i] = svc.Mesh.Engine
	}
	engine, by, c := NodeProxyEngine(engines)
	if c < 0 {
		return
	}
	add(indexPath("topology.services", c)+".mesh.engine",
		"%q, but topology.services[%d].mesh.engine is %q: nodeproxy runs one proxy per node for every service, so it runs one engine; make the services agree (or use \"auto\"), or leave nodeproxy out of datapaths",
		engines[c], by, engine)
}

// ExternalEngines returns, sorted and distinct, the proxy engines the run
// names that need a program besides meshbench (envoy, haproxy): the
// engine of a datapath label (sidecar/haproxy), and a service's
// mesh.engine when a proxied datapath without an engine in its label
// runs. "auto" is left out: it resolves where the run is.
func (s *Scenario) ExternalEngines() []string {
	var out []string
	add := func(e string) {
		if e != "" && e != "auto" && e != "builtin" && !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	for _, dp := range s.Datapaths {
		base, engine := catalog.Split(dp)
		if !slices.Contains(catalog.Proxied(), base) {
			continue
		}
		if engine != "" {
			add(engine)
			continue
		}
		for _, svc := range s.Topology.Services {
			add(svc.Mesh.Engine)
		}
	}
	slices.Sort(out)
	return out
}
