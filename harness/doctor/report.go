package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/meshbench/meshbench/datapaths/catalog"
	"github.com/meshbench/meshbench/harness/chaos/impl"
	"github.com/meshbench/meshbench/scenarios"
)

// Feature names, as they appear in reports and in Requirement.Needs.
const (
	// Host.
	FeatRoot          = "root"             // effective uid 0
	FeatNetns         = "netns"            // can create and remove a network namespace
	FeatVeth          = "veth"             // can create a veth pair (inside a throwaway netns)
	FeatCgroupV2      = "cgroup_v2"        // a cgroup2 hierarchy is mounted
	FeatCgroupV1Mem   = "cgroup_v1_memory" // the cgroup v1 memory controller is mounted
	FeatBTF           = "btf"              // /sys/kernel/btf/vmlinux
	FeatBPF           = "bpf"              // the bpf(2) syscall creates a map
	FeatCgroupAttach  = "cgroup_bpf_attach"
	FeatXDPVeth       = "xdp_veth" // an XDP program attaches to a veth in driver mode
	FeatAFXDP         = "af_xdp"   // socket(AF_XDP) works
	FeatProgSockAddr  = "prog_cgroup_sock_addr"
	FeatProgSockopt   = "prog_cgroup_sockopt"
	FeatProgSockOps   = "prog_sock_ops"
	FeatProgSkMsg     = "prog_sk_msg"
	FeatProgXDP       = "prog_xdp"
	FeatProgSchedCLS  = "prog_sched_cls"
	FeatMapSockHash   = "map_sockhash"
	FeatMapXSKMap     = "map_xskmap"
	FeatHelperMsgHash = "helper_msg_redirect_hash"
	// Netfilter: the binary and, tested with a rule in a throwaway netns,
	// its matches and targets.
	FeatIptables    = "iptables"
	FeatXtREDIRECT  = "xt_REDIRECT"
	FeatXtOwner     = "xt_owner"
	FeatXtStatistic = "xt_statistic"
	FeatXtNFQUEUE   = "xt_NFQUEUE"
	FeatXtTPROXY    = "xt_TPROXY"
	// Queueing disciplines, tested on a veth in a throwaway netns.
	FeatNetem  = "sch_netem"
	FeatTBF    = "sch_tbf"
	FeatHTB    = "sch_htb"
	FeatClsact = "sch_clsact"
	// Tools on PATH.
	FeatIP           = "ip"
	FeatTC           = "tc"
	FeatEthtool      = "ethtool"
	FeatEnvoy        = "envoy"
	FeatDocker       = "docker"
	FeatDockerDaemon = "docker_daemon"
	FeatKind         = "kind"
	FeatClang        = "clang"
	FeatLibbpf       = "libbpf_headers"
)

// Feature groups, in report order.
const (
	GroupHost      = "host"
	GroupBPF       = "bpf"
	GroupNetfilter = "netfilter"
	GroupQdisc     = "qdisc"
	GroupTools     = "tools"
)

// Requirement kinds, in report order.
const (
	KindDatapath = "datapath"
	KindFault    = "fault"
	KindEngine   = "engine"
	KindProvider = "provider"
	KindTask     = "task"
)

// Options tune Check.
type Options struct {
	// Timeout bounds each probe (each command run, each netns step);
	// default 5 s.
	Timeout time.Duration
	// Logger receives one debug record per probe; nil discards.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Feature is one probed host feature.
type Feature struct {
	Name  string `json:"name"`
	Group string `json:"group"`
	// Present is true when the probe succeeded.
	Present bool `json:"present"`
	// Detail is what was found (a version, a path) when present, and what
	// failed when absent.
	Detail string `json:"detail"`
	// Package is the Debian package that provides the feature, when it is
	// absent and one does.
	Package string `json:"package,omitempty"`
}

// Requirement says whether one datapath, fault, engine, provider or task can
// run on this host.
type Requirement struct {
	Kind  string `json:"kind"`
	Name  string `json:"name"`
	Ready bool   `json:"ready"`
	// Using names the implementation that will be used, for items with
	// alternatives (for example delay: "netem" or "nfqueue").
	Using string `json:"using,omitempty"`
	// Needs lists the features of the implementation in use, or of the
	// preferred one when none is ready.
	Needs []string `json:"needs"`
	// Missing lists the features of Needs that are absent.
	Missing []string `json:"missing,omitempty"`
	// Detail explains the choice or what is missing.
	Detail string `json:"detail,omitempty"`
}

// Report is the result of Check.
type Report struct {
	Kernel       string        `json:"kernel"`
	Features     []Feature     `json:"features"`
	Requirements []Requirement `json:"requirements"`
}

// Feature returns the feature called name.
func (r Report) Feature(name string) (Feature, bool) {
	for _, f := range r.Features {
		if f.Name == name {
			return f, true
		}
	}
	return Feature{}, false
}

// Has reports whether the feature called name is present.
func (r Report) Has(name string) bool {
	f, ok := r.Feature(name)
	return ok && f.Present
}

// Requirement returns the requirement of that kind and name.
func (r Report) Requirement(kind, name string) (Requirement, bool) {
	for _, q := range r.Requirements {
		if q.Kind == kind && q.Name == name {
			return q, true
		}
	}
	return Requirement{}, false
}

// WriteJSON writes the report as indented JSON.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write doctor report: %w", err)
	}
	return nil
}

var kindTitles = []struct{ kind, title string }{
	{KindDatapath, "Datapaths"},
	{KindFault, "Faults"},
	{KindEngine, "Proxy engines"},
	{KindProvider, "Providers"},
	{KindTask, "Tasks"},
}

var groupTitles = []struct{ group, title string }{
	{GroupHost, "host"},
	{GroupBPF, "bpf"},
	{GroupNetfilter, "netfilter"},
	{GroupQdisc, "qdisc"},
	{GroupTools, "tools"},
}

// WriteText writes the report as a readable table: every feature with ✓ or ✗
// and its detail, then every requirement with what it uses or lacks.
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "meshbench doctor: kernel %s\n", r.Kernel)
	width := 0
	for _, f := range r.Features {
		width = max(width, len(f.Name))
	}
	for _, q := range r.Requirements {
		width = max(width, len(q.Name))
	}
	b.WriteString("\nFeatures\n")
	for _, g := range groupTitles {
		first := true
		for _, f := range r.Features {
			if f.Group != g.group {
				continue
			}
			if first {
				fmt.Fprintf(&b, "  %s\n", g.title)
				first = false
			}
			detail := f.Detail
			if !f.Present && f.Package != "" {
				detail += " (install: apt-get install " + f.Package + ")"
			}
			fmt.Fprintf(&b, "    %s %-*s  %s\n", mark(f.Present), width, f.Name, oneLine(detail))
		}
	}
	for _, k := range kindTitles {
		first := true
		for _, q := range r.Requirements {
			if q.Kind != k.kind {
				continue
			}
			if first {
				fmt.Fprintf(&b, "\n%s\n", k.title)
				first = false
			}
			var status string
			switch {
			case q.Ready && q.Using != "":
				status = "ready, using " + q.Using
			case q.Ready:
				status = "ready"
			default:
				status = "not ready: missing " + strings.Join(q.Missing, ", ")
			}
			if q.Detail != "" {
				status += " (" + q.Detail + ")"
			}
			fmt.Fprintf(&b, "    %s %-*s  %s\n", mark(q.Ready), width, q.Name, status)
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write doctor report: %w", err)
	}
	return nil
}

func mark(ok bool) string {
	if ok {
		return "✓"
	}
	return "✗"
}

// oneLine folds a multi-line command output into one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// alternative is one way to implement a requirement.
type alternative struct {
	name  string
	needs []string
}

// spec is what one datapath, fault, engine, provider or task needs: the
// first alternative whose features are all present is used.
type spec struct {
	kind, name string
	alts       []alternative
}

var (
	needTestbed = []string{FeatRoot, FeatNetns, FeatVeth}
	needSidecar = join(needTestbed, FeatIptables, FeatXtREDIRECT, FeatXtOwner)
	needCgBPF   = []string{FeatBPF, FeatCgroupV2, FeatCgroupAttach, FeatProgSockAddr, FeatProgSockopt}
	needTCBPF   = []string{FeatRoot, FeatBPF, FeatClsact, FeatProgSchedCLS}
)

func join(a []string, more ...string) []string {
	return append(slices.Clone(a), more...)
}

func one(needs ...string) []alternative { return []alternative{{needs: needs}} }

// specs lists every requirement in report order.
var specs = []spec{
	{KindDatapath, catalog.None, one(needTestbed...)},
	{KindDatapath, catalog.Sidecar, one(needSidecar...)},
	// sockmap keeps the sidecar's redirect rules and accelerates them.
	{KindDatapath, catalog.Sockmap, one(join(join(needSidecar, needCgBPF...), FeatProgSockOps, FeatProgSkMsg, FeatMapSockHash, FeatHelperMsgHash)...)},
	{KindDatapath, catalog.NodeProxy, one(join(needTestbed, needCgBPF...)...)},
	{KindDatapath, catalog.AFXDP, one(join(needTestbed, FeatBPF, FeatProgXDP, FeatMapXSKMap, FeatXDPVeth, FeatAFXDP)...)},

	{KindFault, scenarios.FaultPodKill, []alternative{{impl.Signal, []string{FeatRoot}}}},
	{KindFault, scenarios.FaultProxyKill, []alternative{{impl.Signal, []string{FeatRoot}}}},
	{KindFault, scenarios.FaultDelay, []alternative{
		{impl.Netem, []string{FeatRoot, FeatNetem}},
		{impl.NFQueue, []string{FeatRoot, FeatIptables, FeatXtNFQUEUE}},
	}},
	{KindFault, scenarios.FaultLoss, []alternative{
		{impl.TCBPF, needTCBPF},
		{impl.Statistic, []string{FeatRoot, FeatIptables, FeatXtStatistic}},
	}},
	{KindFault, scenarios.FaultPartition, []alternative{
		{impl.TCBPF, needTCBPF},
		{impl.IptablesDrop, []string{FeatRoot, FeatIptables}},
	}},
	{KindFault, scenarios.FaultBandwidth, []alternative{
		{impl.TBF, []string{FeatRoot, FeatTBF}},
		{impl.HTB, []string{FeatRoot, FeatHTB}},
	}},

	{KindEngine, "builtin", one()},
	{KindEngine, "envoy", one(FeatEnvoy)},

	{KindProvider, "netns", one(needTestbed...)},
	// The kind provider uses kind's Go packages, not the kind command:
	// it needs the docker command and an engine (one that can run
	// privileged containers, which is not probed).
	{KindProvider, "kind", one(FeatDocker, FeatDockerDaemon)},

	{KindTask, "generate", one(FeatClang, FeatLibbpf)},
}

// Names lists the names of every requirement of kind, in report order.
func Names(kind string) []string {
	var out []string
	for _, s := range specs {
		if s.kind == kind {
			out = append(out, s.name)
		}
	}
	return out
}

// evaluate builds the requirements from the features.
func evaluate(features []Feature) []Requirement {
	present := map[string]bool{}
	for _, f := range features {
		present[f.Name] = f.Present
	}
	missingOf := func(needs []string) []string {
		var m []string
		for _, n := range needs {
			if !present[n] {
				m = append(m, n)
			}
		}
		return m
	}
	out := make([]Requirement, 0, len(specs))
	for _, s := range specs {
		q := Requirement{Kind: s.kind, Name: s.name}
		var skipped []string
		for _, a := range s.alts {
			if m := missingOf(a.needs); len(m) > 0 {
				if a.name != "" {
					skipped = append(skipped, a.name+" lacks "+strings.Join(m, ", "))
				}
				continue
			}
			q.Ready, q.Using, q.Needs = true, a.name, slices.Clone(a.needs)
			break
		}
		if !q.Ready {
			q.Needs = slices.Clone(s.alts[0].needs)
			q.Missing = missingOf(q.Needs)
		}
		if len(skipped) > 0 && (q.Ready || len(s.alts) > 1) {
			q.Detail = strings.Join(skipped, "; ")
		}
		if q.Needs == nil {
			q.Needs = []string{}
		}
		out = append(out, q)
	}
	return out
}
