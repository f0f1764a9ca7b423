package catalog

import "strings"

// Datapath names, as scenarios and results spell them.
const (
	None      = "none"
	Sidecar   = "sidecar"
	Sockmap   = "sockmap"
	NodeProxy = "nodeproxy"
	AFXDP     = "afxdp"
)

// Names returns every datapath, in the order the default scenario and
// reports list them.
func Names() []string { return []string{None, Sidecar, Sockmap, NodeProxy, AFXDP} }

// Baseline is the datapath every other is compared with: no mesh.
const Baseline = None

// Proxied are the datapaths whose proxies run an engine: their label may
// name it after a slash ("sidecar/haproxy"), overriding the services'
// mesh.engine, so that one scenario compares engines in the same seat.
func Proxied() []string { return []string{Sidecar, Sockmap, NodeProxy} }

// LabelEngines are the engines a label may name.
var LabelEngines = []string{"builtin", "envoy", "haproxy"}

// Split splits a datapath label into its datapath and the engine it names
// ("" when it names none): "sidecar/haproxy" is sidecar with haproxy.
func Split(label string) (datapath, engine string) {
	datapath, engine, _ = strings.Cut(label, "/")
	return datapath, engine
}
