package nodeproxy

import "github.com/meshbench/meshbench/datapaths/catalog"

// Name is the datapath's name in scenarios and results.
const Name = catalog.NodeProxy

// Hop modes.
const (
	HopsBoth   = "both"   // source node proxy → destination node proxy → pod
	HopsSource = "source" // source node proxy → pod
)

// Options configure the datapath.
type Options struct {
	// Hops is HopsBoth (default) or HopsSource.
	Hops string
}
