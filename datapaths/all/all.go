package all

import (
	"fmt"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/datapaths/none"
	"github.com/meshbench/meshbench/datapaths/sidecar"
	"github.com/meshbench/meshbench/datapaths/sockmap"
)

// ErrNotImplemented is wrapped by New for datapaths this build does not
// have yet.
var ErrNotImplemented = fmt.Errorf("datapath not implemented in this build: %w", datapaths.ErrNotSupported)

// New returns a fresh datapath by name.
func New(name string) (datapaths.Datapath, error) {
	switch name {
	case none.Name:
		return none.New(), nil
	case sidecar.Name:
		return sidecar.New(sidecar.Options{}), nil
	case sockmap.Name:
		return sockmap.New(), nil
	case "nodeproxy", "afxdp":
		return nil, fmt.Errorf("%s: %w", name, ErrNotImplemented)
	default:
		return nil, fmt.Errorf("unknown datapath %q", name)
	}
}

// Implemented lists the datapaths New can build.
func Implemented() []string { return []string{none.Name, sidecar.Name, sockmap.Name} }
