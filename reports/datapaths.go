package reports

import (
	"image/color"

	"github.com/meshbench/meshbench/datapaths/catalog"
	"github.com/meshbench/meshbench/harness/results"
)

// What the report knows about particular datapaths, by name, is in this
// file and nowhere else. The datapaths a report shows come from the
// results (Step.Datapath and Summary.Datapath, in run order: model.datapaths);
// the names below only add what the results do not say, and every one of
// these facts has a fallback for a datapath it does not name:
//
//   - baselineDatapath: the floor the others are compared with; a run
//     without it compares nothing.
//   - datapathColors: fixed colors; others take extraColors (newPalette).
//   - knownModels: proxy placement for the memory extrapolation; others are
//     inferred from where their datapath-role processes ran, in a pod or
//     not (proxyModel), and are "unknown" when no step recorded processes.
//   - datapathNotes: what a datapath does not do (afxdp is L4 only); others
//     get no note.
//   - noStampReasons: why a datapath has no kernel-side latency by design
//     (sockmap); others without one read "no kernel timestamps".
//   - referenceEngine, goalEngine and engineGoals: which proxy engine the
//     engines table divides by and which one it holds to goals; a seat
//     without the reference engine gets no ratios.
//   - wrapperComm: the name of meshbench's own processes, so that a
//     proxy's other descendants count as its engine's child.

// baselineDatapath is the datapath every other one is measured against.
const baselineDatapath = "none"

// Colors: one per known datapath, so a datapath looks the same in every
// figure and every report; a datapath not named here takes the next of
// extraColors in the order the run first measured it, so that up to five
// unknown datapaths in one report never share a color.
var (
	datapathColors = map[string]color.RGBA{
		"none":      {R: 0x44, G: 0x44, B: 0x44, A: 0xff},
		"sidecar":   {R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
		"sockmap":   {R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
		"nodeproxy": {R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
		"afxdp":     {R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	}
	extraColors = []color.RGBA{
		{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
		{R: 0x8c, G: 0x56, B: 0x4b, A: 0xff},
		{R: 0xe3, G: 0x77, B: 0xc2, A: 0xff},
		{R: 0x17, G: 0xbe, B: 0xcf, A: 0xff},
		{R: 0xbc, G: 0xbd, B: 0x22, A: 0xff},
	}
)

// palette maps datapaths to colors.
type palette map[string]color.Color

// newPalette colors datapaths, given in run order: known ones by
// datapathColors, the others from extraColors in turn.
func newPalette(datapaths []string) palette {
	p := palette{}
	extra := 0
	for _, dp := range datapaths {
		if c, ok := datapathColors[dp]; ok {
			p[dp] = c
			continue
		}
		p[dp] = extraColors[extra%len(extraColors)]
		extra++
	}
	return p
}

// of returns dp's color, black for a datapath the palette was not made for.
func (p palette) of(dp string) color.Color {
	if c, ok := p[dp]; ok {
		return c
	}
	return color.Black
}

// Proxy placement models for memory extrapolation.
const (
	modelNone    = "none"     // no proxy: pays nothing
	modelPerPod  = "per pod"  // one proxy per application pod
	modelPerNode = "per node" // one proxy per node
	modelUnknown = "unknown"  // not named in knownModels and no processes recorded to infer from
)

// knownModels places the project's datapaths by their architecture, so
// that it holds even for a run that recorded no processes; others are
// inferred by proxyModel.
var knownModels = map[string]string{
	"none":      modelNone,
	"sidecar":   modelPerPod,
	"sockmap":   modelPerPod,
	"nodeproxy": modelPerNode,
	"afxdp":     modelPerNode,
}

// proxyModel says how datapath dp places its proxies: known datapaths by
// name, others by where their datapath-role processes ran: none at all is
// no proxy, all in pods is per pod, any outside a pod is per node, and a
// datapath whose steps recorded no processes is unknown.
func proxyModel(dp string, steps []results.Step) string {
	if mdl, ok := knownModels[baseOf(dp)]; ok {
		return mdl
	}
	var procs, inPod, outPod int
	for _, s := range steps {
		procs += len(s.Processes)
		for _, p := range s.Processes {
			if p.Role != results.RoleDatapath {
				continue
			}
			if p.Pod != "" {
				inPod++
			} else {
				outPod++
			}
		}
	}
	switch {
	case procs == 0:
		return modelUnknown
	case inPod == 0 && outPod == 0:
		return modelNone
	case outPod == 0:
		return modelPerPod
	default:
		return modelPerNode
	}
}

// datapathNotes say what a datapath does not do, so its numbers are read
// against what it offers.
var datapathNotes = map[string]string{
	"afxdp": "It is L4 only: no retries, no timeouts, no circuit breaking and no L7 routing, so its numbers buy less than a proxy's.",
}

// noStampReasons say why a datapath's requests carry no kernel timestamps
// when that is how the datapath works rather than a fault.
var noStampReasons = map[string]string{
	"sockmap": "n/a: sk_msg moves the app↔sidecar bytes socket to socket, with no packet for the kernel to stamp",
}

// baseOf returns the datapath of a label that names its engine
// ("sidecar/haproxy" is a sidecar): it places its proxies and lacks
// kernel timestamps as its datapath does.
func baseOf(dp string) string {
	base, _ := catalog.Split(dp)
	return base
}

// referenceEngine is the engine the engines table divides the others by,
// in the same seat at the same rate; goalEngine is the engine held to
// engineGoals there.
const (
	referenceEngine = "haproxy"
	goalEngine      = "builtin"
)

// engineGoals are the project's goals for goalEngine against
// referenceEngine: the most each ratio may be.
var engineGoals = struct{ AddedP50, CPU, PSS float64 }{AddedP50: 1.25, CPU: 1.5, PSS: 1}

// wrapperComm is the comm of meshbench's own processes: a proxy that runs
// another program (haproxy, envoy) is a meshbench wrapper, and its
// descendants of another comm are its engine's child.
const wrapperComm = "meshbench"
