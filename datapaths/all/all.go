package all

import (
	"fmt"
	"slices"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/datapaths/afxdp"
	"github.com/meshbench/meshbench/datapaths/catalog"
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
//
// A proxy datapath's name may name its engine after a slash
// ("sidecar/haproxy", catalog.Split): the datapath then runs that engine
// whatever the services' mesh.engine, and results carry the whole label.
func New(name string, sc *scenarios.Scenario, opts Options) (datapaths.Datapath, error) {
	base, engine := catalog.Split(name)
	if engine != "" && !slices.Contains(catalog.Proxied(), base) {
		return nil, fmt.Errorf("datapath %q: %s takes no engine", name, base)
	}
	switch base {
	case none.Name:
		return none.New(), nil
	case sidecar.Name:
		return sidecar.New(sidecar.Options{Name: name, Engine: engine, EnvoyBinary: opts.EnvoyBinary}), nil
	case sockmap.Name:
		return sockmap.New(sockmap.Options{Name: name, Engine: engine, EnvoyBinary: opts.EnvoyBinary}), nil
	case nodeproxy.Name:
		npo := nodeproxy.Options{Name: name, Engine: engine, EnvoyBinary: opts.EnvoyBinary}
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
