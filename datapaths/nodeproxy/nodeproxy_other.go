//go:build !linux

package nodeproxy

import "github.com/meshbench/meshbench/datapaths"

// Name is the datapath's name in scenarios and results.
const Name = "nodeproxy"

// Options configure the datapath.
type Options struct {
	// Hops is "both" or "source".
	Hops string
}

// New returns a datapath that reports it needs Linux.
func New(Options) datapaths.Datapath { return datapaths.Unsupported(Name, "needs Linux eBPF") }
