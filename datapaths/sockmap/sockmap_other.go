//go:build !linux

package sockmap

import "github.com/meshbench/meshbench/datapaths"

// New returns a datapath that reports it needs Linux.
func New(Options) datapaths.Datapath { return datapaths.Unsupported(Name, "needs Linux eBPF") }
