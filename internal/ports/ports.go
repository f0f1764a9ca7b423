package ports

// Ports of a mesh proxy (Envoy's and Istio's conventions) and of the echo
// server's admin endpoint.
const (
	// ProxyAdmin is the proxy's admin endpoint (/stats), on loopback.
	ProxyAdmin = 15000
	// ProxyOutbound is the listener that captures a pod's outbound
	// connections.
	ProxyOutbound = 15001
	// ProxyInbound is the listener that captures a pod's inbound
	// connections.
	ProxyInbound = 15006
	// HBONE is Istio's tunnel port; meshbench reserves it.
	HBONE = 15008
	// AgentStatus and Health are Istio's status and health ports;
	// meshbench reserves them.
	AgentStatus = 15020
	Health      = 15021
	// EchoAdmin is the echo server's admin endpoint (/stats, /healthz),
	// on the pod's loopback.
	EchoAdmin = 15090
)

// Reserved returns the ports a scenario's services may not use, in
// ascending order: every port above.
func Reserved() []int {
	return []int{ProxyAdmin, ProxyOutbound, ProxyInbound, HBONE, AgentStatus, Health, EchoAdmin}
}

// InboundExcluded returns the ports a sidecar's inbound capture leaves
// alone (Istio's exclusions: the tunnel, the status and health ports, and
// the echo server's admin port the harness reads).
func InboundExcluded() []int { return []int{HBONE, EchoAdmin, Health, AgentStatus} }
