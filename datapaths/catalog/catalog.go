package catalog

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
