package sidecar

import (
	"fmt"
	"time"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/datapaths/controlplane"
	"github.com/meshbench/meshbench/datapaths/proxy"
	"github.com/meshbench/meshbench/scenarios"
)

// MeshModel derives the control plane's model from the services and their
// scenario mesh settings; proxies are the node ids expected to connect.
func MeshModel(svcs []*datapaths.Service, proxies []string) controlplane.Model {
	m := controlplane.ModelFromServices(svcs, controlplane.Service{}, proxies)
	for i, s := range svcs {
		ms := s.Mesh
		if ms == (scenarios.Mesh{}) {
			ms = scenarios.DefaultMesh()
		}
		cs := &m.Services[i]
		cs.Protocol = controlplane.Protocol(ms.Protocol)
		cs.LBPolicy = controlplane.LBPolicy(ms.LBPolicy)
		cs.HashHeader = ms.HashHeader
		cs.CircuitBreakers = controlplane.CircuitBreakers{
			MaxConnections:     uint32(ms.CircuitBreakers.MaxConnections),
			MaxPendingRequests: uint32(ms.CircuitBreakers.MaxPendingRequests),
			MaxRequests:        uint32(ms.CircuitBreakers.MaxRequests),
			MaxRetries:         uint32(ms.CircuitBreakers.MaxRetries),
		}
		cs.Retries = controlplane.RetryPolicy{
			Attempts:      uint32(ms.Retries.Attempts),
			PerTryTimeout: time.Duration(ms.Retries.PerTryTimeout),
			RetryOn:       ms.Retries.RetryOn,
		}
		cs.Timeout = time.Duration(ms.Timeout)
	}
	return m
}

// ResolveEngine turns a scenario engine ("auto", "builtin", "envoy") into
// the engine to run: auto picks Envoy when a binary is found.
func ResolveEngine(engine string) (string, error) {
	switch engine {
	case "", "auto":
		if _, err := proxy.EnvoyAvailable(); err == nil {
			return "envoy", nil
		}
		return "builtin", nil
	case "builtin":
		return "builtin", nil
	case "envoy":
		if _, err := proxy.EnvoyAvailable(); err != nil {
			return "", fmt.Errorf("engine envoy: %w: %w", err, datapaths.ErrNotSupported)
		}
		return "envoy", nil
	default:
		return "", fmt.Errorf("unknown proxy engine %q", engine)
	}
}
