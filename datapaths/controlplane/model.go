package controlplane

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"time"

	"github.com/meshbench/meshbench/internal/ports"
)

// Protocol is how a service's port is proxied.
type Protocol string

// Protocols.
const (
	// HTTP services are routed by host and path, with retries and timeouts.
	HTTP Protocol = "http"
	// TCP services are proxied as opaque byte streams.
	TCP Protocol = "tcp"
)

// LBPolicy is a cluster's load-balancing policy, named as Envoy names it.
type LBPolicy string

// Load-balancing policies.
const (
	RoundRobin LBPolicy = "ROUND_ROBIN"
	// LeastRequest picks the less loaded of two random endpoints.
	LeastRequest LBPolicy = "LEAST_REQUEST"
	// Maglev hashes Service.HashHeader, or the source address when it is
	// empty, onto a Maglev table.
	Maglev LBPolicy = "MAGLEV"
	Random LBPolicy = "RANDOM"
	// RingHash is valid for Envoy but the builtin engine does not implement
	// it and NACKs a cluster that uses it.
	RingHash LBPolicy = "RING_HASH"
)

// Well-known names and ports of the configuration the server generates.
const (
	// OutboundListener is the name of the listener that captures the pod's
	// outbound connections.
	OutboundListener = "outbound"
	// InboundListener is the name of the listener that captures the pod's
	// inbound connections.
	InboundListener = "inbound"
	// OutboundPort and InboundPort are the ports of those listeners.
	OutboundPort = ports.ProxyOutbound
	InboundPort  = ports.ProxyInbound
	// PassthroughCluster forwards outbound connections to destinations no
	// service knows, to their original destination.
	PassthroughCluster = "PassthroughCluster"
	// InboundPassthroughCluster forwards inbound connections to ports no
	// service knows, to the local application.
	InboundPassthroughCluster = "InboundPassthroughCluster"
)

// Model is the mesh the control plane serves: every service with its
// endpoints, and the proxies expected to connect.
type Model struct {
	Services []Service
	// Proxies are node ids ("sidecar~<pod>", "nodeproxy~<node>") that get a
	// snapshot before they connect. Proxies that connect with other ids
	// get one when they connect.
	Proxies []string
}

// Service is one service port and its endpoints.
type Service struct {
	Name string
	Port int
	// VIP is the service's virtual address; optional.
	VIP      netip.Addr
	Protocol Protocol
	// LBPolicy; default RoundRobin.
	LBPolicy LBPolicy
	// HashHeader is the request header Maglev hashes; empty: the source
	// address.
	HashHeader      string
	CircuitBreakers CircuitBreakers
	Retries         RetryPolicy
	// Timeout of a whole request, retries included; 0: none.
	Timeout time.Duration
	// ConnectTimeout of upstream connections; default 1s.
	ConnectTimeout time.Duration
	Endpoints      []Endpoint
}

// CircuitBreakers are a cluster's thresholds, as Envoy defines them; 0
// means Envoy's default (1024 for connections, pending and requests, 3 for
// retries).
type CircuitBreakers struct {
	MaxConnections     uint32
	MaxPendingRequests uint32
	MaxRequests        uint32
	MaxRetries         uint32
}

// RetryPolicy says when and how often a request is retried.
type RetryPolicy struct {
	// Attempts is the number of retries after the first try; 0: none.
	Attempts uint32
	// PerTryTimeout bounds each try; 0: none.
	PerTryTimeout time.Duration
	// RetryOn is Envoy's retry_on list; default "connect-failure,5xx".
	RetryOn string
}

// Endpoint is one backend of a service.
type Endpoint struct {
	// Pod is the pod's name.
	Pod     string
	IP      netip.Addr
	Port    int
	Healthy bool
}

// Defaults of the circuit breakers, as Envoy's.
const (
	DefaultMaxConnections     = 1024
	DefaultMaxPendingRequests = 1024
	DefaultMaxRequests        = 1024
	DefaultMaxRetries         = 3
)

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// Validate says whether the model can be turned into configuration.
func (m *Model) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for i, s := range m.Services {
		key := fmt.Sprintf("%s:%d", s.Name, s.Port)
		if !nameRE.MatchString(s.Name) {
			errs = append(errs, fmt.Errorf("service %d: invalid name %q", i, s.Name))
		}
		if s.Port < 1 || s.Port > 65535 {
			errs = append(errs, fmt.Errorf("service %s: port %d out of range", s.Name, s.Port))
		}
		if seen[key] {
			errs = append(errs, fmt.Errorf("service %s: duplicate", key))
		}
		seen[key] = true
		switch s.Protocol {
		case HTTP, TCP, "":
		default:
			errs = append(errs, fmt.Errorf("service %s: unknown protocol %q", key, s.Protocol))
		}
		switch s.LBPolicy {
		case RoundRobin, LeastRequest, Maglev, Random, RingHash, "":
		default:
			errs = append(errs, fmt.Errorf("service %s: unknown lb policy %q", key, s.LBPolicy))
		}
		if s.VIP.IsValid() && !s.VIP.Is4() {
			errs = append(errs, fmt.Errorf("service %s: VIP %s is not IPv4", key, s.VIP))
		}
		if s.Retries.PerTryTimeout < 0 || s.Timeout < 0 || s.ConnectTimeout < 0 {
			errs = append(errs, fmt.Errorf("service %s: negative timeout", key))
		}
		for j, e := range s.Endpoints {
			if !e.IP.IsValid() || !e.IP.Is4() {
				errs = append(errs, fmt.Errorf("service %s: endpoint %d: invalid IPv4 address %v", key, j, e.IP))
			}
			if e.Port < 1 || e.Port > 65535 {
				errs = append(errs, fmt.Errorf("service %s: endpoint %d: port %d out of range", key, j, e.Port))
			}
		}
	}
	return errors.Join(errs...)
}

func (s *Service) protocol() Protocol {
	if s.Protocol == "" {
		return HTTP
	}
	return s.Protocol
}

func (s *Service) lbPolicy() LBPolicy {
	if s.LBPolicy == "" {
		return RoundRobin
	}
	return s.LBPolicy
}

// ClusterName is the name of the cluster of a service port, as Istio names
// outbound clusters.
func ClusterName(service string, port int) string {
	return fmt.Sprintf("outbound|%d||%s", port, service)
}

// InboundClusterName is the name of the cluster that delivers a port's
// inbound traffic to the local application.
func InboundClusterName(port int) string {
	return fmt.Sprintf("inbound|%d||", port)
}

// RouteName is the name of the outbound route configuration of a port.
func RouteName(port int) string {
	return fmt.Sprintf("outbound|%d", port)
}
