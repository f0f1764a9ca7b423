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

// Options are the settings of the datapaths that do not come from the
// scenario.
type Options struct {
	// EnvoyBinary is the Envoy binary of the envoy engine ("": envoy on
	// PATH).
	EnvoyBinary string
}

// New returns a fresh datapath by name, configured from sc (nil: defaults)
// and opts.
func New(name string, sc *scenarios.Scenario, opts Options) (datapaths.Datapath, error) {
	switch name {
	case none.Name:
		return none.New(), nil
	case sidecar.Name:
		return sidecar.New(sidecar.Options{EnvoyBinary: opts.EnvoyBinary}), nil
	case sockmap.Name:
		return sockmap.New(sockmap.Options{EnvoyBinary: opts.EnvoyBinary}), nil
	case nodeproxy.Name:
		npo := nodeproxy.Options{EnvoyBinary: opts.EnvoyBinary}
		if sc != nil {
			npo.Hops = sc.NodeProxy.Hops
		}
		return nodeproxy.New(npo), nil
	case afxdp.Name:
		return afxdp.New(), nil
	default:
		return nil, fmt.Errorf("unknown datapath %q", name)
	}
}

// For returns a constructor of sc's datapaths, as harness.Options wants.
func For(sc *scenarios.Scenario, opts Options) func(name string) (datapaths.Datapath, error) {
	return func(name string) (datapaths.Datapath, error) { return New(name, sc, opts) }
}
