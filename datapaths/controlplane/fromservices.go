package controlplane

import (
	"net/netip"
	"time"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/scenarios"
)

// SidecarNodeID is the node id of the sidecar of a pod.
func SidecarNodeID(pod string) string { return "sidecar~" + pod }

// NodeProxyNodeID is the node id of the per-node proxy of a node.
func NodeProxyNodeID(node string) string { return "nodeproxy~" + node }

// ModelFromServices derives a model from the scenario's services resolved
// onto the cluster: every backend pod is a healthy endpoint on the
// service's port. tmpl supplies what scenarios do not say yet (protocol, LB
// policy, circuit breakers, retries, timeouts); its name, port, VIP and
// endpoints are ignored. proxies are the node ids expected to connect.
func ModelFromServices(svcs []*datapaths.Service, tmpl Service, proxies []string) Model {
	m := Model{Proxies: append([]string(nil), proxies...)}
	for _, s := range svcs {
		svc := tmpl
		svc.Name, svc.Port, svc.VIP, svc.Endpoints = s.Name, s.Port, s.VIP, nil
		for _, p := range s.Backends {
			svc.Endpoints = append(svc.Endpoints, Endpoint{Pod: p.Name, IP: p.IP, Port: s.Port, Healthy: true})
		}
		m.Services = append(m.Services, svc)
	}
	return m
}

// WithPodHealth returns a copy of m in which pod's endpoints are unhealthy (a
// killed pod), or healthy again when healthy is set (a restarted pod).
func (m Model) WithPodHealth(pod string, healthy bool) Model {
	return m.withPod(pod, func(e *Endpoint) { e.Healthy = healthy })
}

// withPod returns a copy of m in which change has been applied to pod's
// endpoints; m is left as it was.
func (m Model) withPod(pod string, change func(*Endpoint)) Model {
	out := m
	out.Services = make([]Service, len(m.Services))
	for i, s := range m.Services {
		s.Endpoints = append([]Endpoint(nil), s.Endpoints...)
		for j := range s.Endpoints {
			if s.Endpoints[j].Pod == pod {
				change(&s.Endpoints[j])
			}
		}
		out.Services[i] = s
	}
	return out
}

// WithPodAddress returns a copy of m in which pod's endpoints have address
// ip (a deleted pod's replacement), their health unchanged.
func (m Model) WithPodAddress(pod string, ip netip.Addr) Model {
	return m.withPod(pod, func(e *Endpoint) { e.IP = ip })
}

// ModelOf derives the control plane's model from the services and their
// scenario mesh policies; proxies are the node ids expected to connect.
func ModelOf(svcs []*datapaths.Service, proxies []string) Model {
	m := ModelFromServices(svcs, Service{}, proxies)
	for i, s := range svcs {
		ms := s.Mesh
		if ms == (scenarios.MeshPolicy{}) {
			ms = scenarios.DefaultMeshPolicy()
		}
		cs := &m.Services[i]
		cs.Protocol = Protocol(ms.Protocol)
		cs.LBPolicy = LBPolicy(ms.LBPolicy)
		cs.HashHeader = ms.HashHeader
		cs.CircuitBreakers = CircuitBreakers{
			MaxConnections:     uint32(ms.CircuitBreakers.MaxConnections),
			MaxPendingRequests: uint32(ms.CircuitBreakers.MaxPendingRequests),
			MaxRequests:        uint32(ms.CircuitBreakers.MaxRequests),
			MaxRetries:         uint32(ms.CircuitBreakers.MaxRetries),
		}
		cs.Retries = RetryPolicy{
			Attempts:      uint32(ms.Retries.Attempts),
			PerTryTimeout: time.Duration(ms.Retries.PerTryTimeout),
			RetryOn:       ms.Retries.RetryOn,
		}
		cs.Timeout = time.Duration(ms.Timeout)
	}
	return m
}
