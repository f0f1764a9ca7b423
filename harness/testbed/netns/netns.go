package netns

import (
	"fmt"
	"io"
	"log/slog"
	"regexp"

	"github.com/meshbench/meshbench/harness/testbed"
)

// RunDir is where named network namespaces are bind-mounted, as
// ip-netns(8) does, so that `ip netns exec NAME` works on them.
const RunDir = "/var/run/netns"

// Disabled, as Options.CgroupRoot or Options.MemoryCgroupRoot, turns that
// cgroup hierarchy off.
const Disabled = "none"

// Limits of one cluster, from the addressing plan (pods 198.18.<node>.<10+k>,
// nodes 198.19.0.<node+1>) and the 15-byte interface names.
const (
	MaxNodes       = 200
	MaxPodsPerNode = 200
	MaxPods        = 9999
	maxPodName     = 32
)

// Options configures the provider.
type Options struct {
	// Logger receives debug logs of every object created and removed; nil
	// discards them.
	Logger *slog.Logger
	// CgroupRoot is the cgroup v2 mount pods' cgroups are created under:
	// "" finds it in /proc/self/mountinfo, Disabled turns cgroup v2 off.
	CgroupRoot string
	// MemoryCgroupRoot is the cgroup v1 memory controller mount: "" finds
	// it in /proc/self/mountinfo (none on a pure cgroup v2 host), Disabled
	// turns it off.
	MemoryCgroupRoot string
}

// Provider builds clusters of network namespaces on this host.
type Provider struct {
	log  *slog.Logger
	opts Options
	// hook, when set (tests), runs after each step of Create; an error
	// makes Create fail there.
	hook func(step string) error
}

var _ testbed.Provider = (*Provider)(nil)

// New returns the netns provider.
func New(opts Options) *Provider {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Provider{log: log, opts: opts}
}

// Name returns "netns".
func (p *Provider) Name() string { return "netns" }

var (
	runIDRe   = regexp.MustCompile(`^[0-9a-f]{1,8}$`)
	podNameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	// Pod names that would collide with node and fabric objects.
	reservedRe = regexp.MustCompile(`^(fab|n[0-9]+|node-[0-9]+)$`)
	// Objects of any run, for Down and Leftovers with runID "".
	anyNetnsRe  = regexp.MustCompile(`^mb-[0-9a-f]{1,8}-.`)
	anyCgroupRe = regexp.MustCompile(`^meshbench-[0-9a-f]{1,8}$`)
	anyLinkRe   = regexp.MustCompile(`^mb[0-9a-f]{1,8}[g-z]`)
)

// ValidateRunID checks that id is 1 to 8 lower-case hex digits.
func ValidateRunID(id string) error {
	if !runIDRe.MatchString(id) {
		return fmt.Errorf("run id %q: want 1 to 8 lower-case hex digits", id)
	}
	return nil
}

// validateSpec checks spec against the naming and addressing limits.
func validateSpec(spec testbed.Spec) error {
	if err := ValidateRunID(spec.RunID); err != nil {
		return err
	}
	if spec.Nodes < 1 || spec.Nodes > MaxNodes {
		return fmt.Errorf("nodes %d: want 1 to %d", spec.Nodes, MaxNodes)
	}
	if len(spec.Pods) > MaxPods {
		return fmt.Errorf("%d pods: at most %d", len(spec.Pods), MaxPods)
	}
	seen := map[string]bool{}
	perNode := make([]int, spec.Nodes)
	for _, ps := range spec.Pods {
		switch {
		case len(ps.Name) > maxPodName || !podNameRe.MatchString(ps.Name):
			return fmt.Errorf("pod name %q: want at most %d lower-case letters, digits and inner '-'", ps.Name, maxPodName)
		case reservedRe.MatchString(ps.Name):
			return fmt.Errorf("pod name %q is reserved for nodes and the fabric", ps.Name)
		case seen[ps.Name]:
			return fmt.Errorf("pod name %q used twice", ps.Name)
		case ps.Node < 0 || ps.Node >= spec.Nodes:
			return fmt.Errorf("pod %s: node %d out of range 0..%d", ps.Name, ps.Node, spec.Nodes-1)
		}
		seen[ps.Name] = true
		perNode[ps.Node]++
		if perNode[ps.Node] > MaxPodsPerNode {
			return fmt.Errorf("node %d: more than %d pods", ps.Node, MaxPodsPerNode)
		}
	}
	return nil
}

// Object names. Each carries the run id so that Down finds it.

func netnsName(runID, obj string) string { return "mb-" + runID + "-" + obj }
func fabricName(runID string) string     { return netnsName(runID, "fab") }
func nodeName(i int) string              { return fmt.Sprintf("n%d", i) }
func cgroupTopName(runID string) string  { return "meshbench-" + runID }
func nodeCgroupName(i int) string        { return fmt.Sprintf("node-%d", i) }

// hostVethName is the node-side end of pod j's veth (j indexes Spec.Pods);
// at most 2+8+1+4 = 15 bytes.
func hostVethName(runID string, j int) string { return fmt.Sprintf("mb%sp%d", runID, j) }

// fabricVethName is the fabric-side end of node i's uplink; "u", like
// "p", is not a hex digit, so names of different runs never share a prefix.
func fabricVethName(runID string, i int) string { return fmt.Sprintf("mb%su%d", runID, i) }

// Interface names inside the namespaces.
const (
	bridgeName = "br0"
	uplinkName = "uplink"
	podIfName  = "eth0"
)
