package sockmap

import "github.com/meshbench/meshbench/datapaths/catalog"

// Name is the datapath's name in scenarios and results.
const Name = catalog.Sockmap

// Options configure the datapath.
type Options struct {
	// Name is the datapath's name; default "sockmap". Engine, when set,
	// runs every sidecar on it (see sidecar.Options).
	Name, Engine string
	// EnvoyBinary is the Envoy binary of the envoy engine ("": envoy on
	// PATH).
	EnvoyBinary string
}
