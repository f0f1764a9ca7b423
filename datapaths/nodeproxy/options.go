package nodeproxy

import (
	"github.com/meshbench/meshbench/datapaths/catalog"
	"github.com/meshbench/meshbench/internal/ports"
)

// Name is the datapath's name in scenarios and results.
const Name = catalog.NodeProxy

// Ports the node proxy listens on in its node's namespace: the control
// plane's listener ports, which Envoy takes from its configuration.
const (
	OutboundPort = ports.ProxyOutbound
	InboundPort  = ports.ProxyInbound
)

// Hop modes.
const (
	HopsBoth   = "both"   // source node proxy → destination node proxy → pod
	HopsSource = "source" // source node proxy → pod
)

// Options configure the datapath.
type Options struct {
	// Name is the datapath's name; default "nodeproxy". Engine, when set,
	// runs the node proxies on it whatever the services' mesh.engine.
	Name, Engine string
	// Hops is HopsBoth (default) or HopsSource.
	Hops string
	// EnvoyBinary is the Envoy binary of the envoy engine ("": envoy on
	// PATH). The engine comes from the services' mesh.engine, which must
	// agree (scenarios.NodeProxyEngine).
	EnvoyBinary string
}
