package all

import (
	"fmt"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/datapaths/afxdp"
	"github.com/meshbench/meshbench/datapaths/nodeproxy"
	"github.com/meshbench/meshbench/datapaths/none"
	"github.com/meshbench/meshbench/datapaths/sidecar"
	"github.com/meshbench/meshbench/datapaths/sockmap"
	"github.com/meshbench/meshbench/scenarios"
)

// New returns a fresh datapath by name, configured from sc (nil: defaults).
func New(name string, sc *scenarios.Scenario) (datapaths.Datapath, error) {
	switch name {
	case none.Name:
		return none.New(), nil
	case sidecar.Name:
		return sidecar.New(sidecar.Options{}), nil
	case sockmap.Name:
		return sockmap.New(), nil
	case nodeproxy.Name:
		var opts nodeproxy.Options
		if sc != nil {
			opts.Hops = sc.NodeProxy.Hops
		}
		return nodeproxy.New(opts), nil
	case afxdp.Name:
		return afxdp.New(), nil
	default:
		return nil, fmt.Errorf("unknown datapath %q", name)
	}
}

// For returns a constructor of sc's datapaths, as harness.Options wants.
func For(sc *scenarios.Scenario) func(name string) (datapaths.Datapath, error) {
	return func(name string) (datapaths.Datapath, error) { return New(name, sc) }
}
