package scenarios

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshbench/meshbench/datapaths/catalog"
)

// Fault names a chaos entry may use.
const (
	FaultPodKill   = "pod-kill"   // kill the workload process; restarted after duration
	FaultProxyKill = "proxy-kill" // kill the datapath's proxies (sidecar or node proxy)
	FaultDelay     = "delay"      // add latency to packets
	FaultLoss      = "loss"       // drop a share of packets on the receiving side
	FaultPartition = "partition"  // drop all traffic between selector and target
	FaultBandwidth = "bandwidth"  // limit the rate with a token bucket
)

// Faults lists every fault name in the order reports present them.
var Faults = []string{FaultPodKill, FaultProxyKill, FaultDelay, FaultLoss, FaultPartition, FaultBandwidth}

// Selector modes (Chaos Mesh's names) and directions.
var (
	ChaosModes      = []string{"all", "one", "fixed", "fixed-percent"}
	ChaosDirections = []string{"to", "from", "both"}
)

// ChaosEntry is one fault of the chaos timeline, applied during every
// measured load step. Field names follow Chaos Mesh's PodChaos and
// NetworkChaos (selector, mode, value, direction, target, delay, loss,
// bandwidth), in this project's snake_case.
type ChaosEntry struct {
	// Name labels the fault in results; default "<fault>-<index>".
	Name string `yaml:"name" json:"name,omitempty"`
	// At is when the fault starts, from the start of the measured window.
	At Duration `yaml:"at" json:"at"`
	// Duration is how long the fault lasts (> 0). For pod-kill and
	// proxy-kill it is how long the process stays down before it is
	// restarted, as a ReplicaSet would after its back-off.
	Duration Duration `yaml:"duration" json:"duration"`
	// Fault is one of Faults.
	Fault string `yaml:"fault" json:"fault"`
	// Selector chooses the pods (or nodes) the fault acts on.
	Selector ChaosSelector `yaml:"selector" json:"selector"`
	// Mode chooses among the selected pods: "all" (default), "one" (the
	// first in name order, so that runs are repeatable), "fixed" (the first
	// Value pods) or "fixed-percent" (the first Value percent, at least one).
	Mode  string `yaml:"mode" json:"mode,omitempty"`
	Value string `yaml:"value" json:"value,omitempty"`
	// Direction of the network faults relative to the selected pods: "to"
	// (default: traffic the selected pods send, toward Target when set),
	// "from" (traffic they receive) or "both".
	Direction string `yaml:"direction" json:"direction,omitempty"`
	// Target is the peer set of a partition (required) or restricts delay
	// and loss to traffic with these peers.
	Target *ChaosTarget `yaml:"target" json:"target,omitempty"`
	// Delay parameters, for the delay fault.
	Delay *DelaySpec `yaml:"delay" json:"delay,omitempty"`
	// Loss parameters, for the loss fault.
	Loss *LossSpec `yaml:"loss" json:"loss,omitempty"`
	// Bandwidth parameters, for the bandwidth fault.
	Bandwidth *BandwidthSpec `yaml:"bandwidth" json:"bandwidth,omitempty"`
	// AllowInactive lets a step pass when the fault's own counters show it
	// did nothing (no packet matched its rules, no process was killed).
	// By default such a fault fails the step: a chaos result from a fault
	// that never bit would be a result about nothing.
	AllowInactive bool `yaml:"allow_inactive" json:"allow_inactive,omitempty"`
}

// ChaosSelector selects pods by name, by service (the service's replicas)
// or by node (the pods on the node; for proxy-kill, also the node's own
// proxies). The sets are joined.
type ChaosSelector struct {
	// Pods are pod names ("n1-p0": pod 0 of node 1).
	Pods []string `yaml:"pods" json:"pods,omitempty"`
	// Services are service names of the topology.
	Services []string `yaml:"services" json:"services,omitempty"`
	// Nodes are node names ("n1": node 1).
	Nodes []string `yaml:"nodes" json:"nodes,omitempty"`
}

// ChaosTarget is the peer set of a network fault, as in Chaos Mesh.
type ChaosTarget struct {
	Selector ChaosSelector `yaml:"selector" json:"selector"`
	Mode     string        `yaml:"mode" json:"mode,omitempty"`
	Value    string        `yaml:"value" json:"value,omitempty"`
}

// DelaySpec is the delay fault's parameters.
type DelaySpec struct {
	// Latency added to every packet (1ms..10s).
	Latency Duration `yaml:"latency" json:"latency"`
	// Jitter: each packet's delay is Latency ± a uniform random share of
	// Jitter (0..Latency); packets stay in order.
	Jitter Duration `yaml:"jitter" json:"jitter,omitempty"`
}

// LossSpec is the loss fault's parameters.
type LossSpec struct {
	// Loss is the percentage of packets dropped, as Chaos Mesh writes it:
	// "10" or "0.5" (0 < loss <= 100).
	Loss string `yaml:"loss" json:"loss"`
}

// BandwidthSpec is the bandwidth fault's parameters (a token bucket
// filter, as Chaos Mesh's bandwidth action).
type BandwidthSpec struct {
	// Rate is bits per second with a unit: "800kbps", "1mbps", "1gbps"
	// (bps, kbps, mbps, gbps; decimal).
	Rate string `yaml:"rate" json:"rate"`
	// Limit is the queue length in bytes; default 100000.
	Limit uint32 `yaml:"limit" json:"limit,omitempty"`
	// Buffer is the bucket size (burst) in bytes, at least 1600; default
	// 16000.
	Buffer uint32 `yaml:"buffer" json:"buffer,omitempty"`
}

// Limits of chaos parameters.
const (
	MaxChaosEntries = 64
	MinDelay        = time.Millisecond
	MaxDelay        = 10 * time.Second
	MinTBFBuffer    = 1600
)

var rateRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)(bps|kbps|mbps|gbps)$`)

// ParseRate returns a bandwidth rate ("1mbps") in bits per second.
func ParseRate(s string) (uint64, error) {
	m := rateRE.FindStringSubmatch(strings.ToLower(strings.TrimSpace(s)))
	if m == nil {
		return 0, fmt.Errorf("rate %q: want a number and one of bps, kbps, mbps, gbps", s)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("rate %q: %w", s, err)
	}
	mult := map[string]float64{"bps": 1, "kbps": 1e3, "mbps": 1e6, "gbps": 1e9}[m[2]]
	bps := uint64(v * mult)
	if bps < 8000 || bps > 100e9 {
		return 0, fmt.Errorf("rate %q: must be between 8kbps and 100gbps", s)
	}
	return bps, nil
}

// ParseLoss returns a loss percentage ("10", "0.5") as a probability in
// (0, 1].
func ParseLoss(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "%"), 64)
	if err != nil || v <= 0 || v > 100 {
		return 0, fmt.Errorf("loss %q: want a percentage above 0 and at most 100", s)
	}
	return v / 100, nil
}

// ChaosName returns the entry's name, or "<fault>-<i>" when it has none.
func (e *ChaosEntry) ChaosName(i int) string {
	if e.Name != "" {
		return e.Name
	}
	return fmt.Sprintf("%s-%d", e.Fault, i)
}

var (
	podNameRE  = regexp.MustCompile(`^n([0-9]+)-p([0-9]+)$`)
	nodeNameRE = regexp.MustCompile(`^n([0-9]+)$`)
)

// validateChaos reports impossible chaos entries.
func (s *Scenario) validateChaos(p *problems) {
	s.checkChaosDatapaths(p.addf)
	if len(s.Chaos) > MaxChaosEntries {
		p.addf("chaos", "at most %d entries, got %d", MaxChaosEntries, len(s.Chaos))
	}
	names := map[string]int{}
	for i := range s.Chaos {
		e := &s.Chaos[i]
		path := indexPath("chaos", i)
		if e.Name != "" {
			if !dnsLabel.MatchString(e.Name) || len(e.Name) > maxServiceName {
				p.addf(path+".name", "%q is not a DNS label", e.Name)
			}
			if first, dup := names[e.Name]; dup {
				p.addf(path+".name", "duplicate chaos name %q (also chaos[%d])", e.Name, first)
			}
			names[e.Name] = i
		}
		if !slices.Contains(Faults, e.Fault) {
			p.addf(path+".fault", "unknown fault %q (known: %s)", e.Fault, strings.Join(Faults, ", "))
		}
		at, d := time.Duration(e.At), time.Duration(e.Duration)
		load := time.Duration(s.Load.Duration)
		if at < 0 || at >= load {
			p.addf(path+".at", "must be between 0s and the load duration %s (exclusive), got %s", s.Load.Duration, e.At)
		}
		if d <= 0 || d > MaxDuration {
			p.addf(path+".duration", "must be > 0 and at most %s, got %s", Duration(MaxDuration), e.Duration)
		}
		s.validateSelector(p, path+".selector", &e.Selector)
		checkMode(p, path, e.Mode, e.Value)
		if e.Direction != "" && !slices.Contains(ChaosDirections, e.Direction) {
			p.addf(path+".direction", "unknown direction %q (want one of %s)", e.Direction, strings.Join(ChaosDirections, ", "))
		}
		network := e.Fault == FaultDelay || e.Fault == FaultLoss || e.Fault == FaultPartition || e.Fault == FaultBandwidth
		if !network && e.Direction != "" {
			p.addf(path+".direction", "only network faults have a direction")
		}
		if e.Target != nil {
			if e.Fault != FaultDelay && e.Fault != FaultLoss && e.Fault != FaultPartition {
				p.addf(path+".target", "only delay, loss and partition take a target")
			}
			s.validateSelector(p, path+".target.selector", &e.Target.Selector)
			checkMode(p, path+".target", e.Target.Mode, e.Target.Value)
		} else if e.Fault == FaultPartition {
			p.addf(path+".target", "a partition needs a target: the pods on the other side")
		}
		param := func(name string, set, want bool) {
			switch {
			case want && !set:
				p.addf(path+"."+name, "the %s fault needs %s parameters", e.Fault, name)
			case !want && set:
				p.addf(path+"."+name, "only the %s fault takes %s parameters (fault is %q)", name, name, e.Fault)
			}
		}
		param("delay", e.Delay != nil, e.Fault == FaultDelay)
		param("loss", e.Loss != nil, e.Fault == FaultLoss)
		param("bandwidth", e.Bandwidth != nil, e.Fault == FaultBandwidth)
		if e.Delay != nil {
			if l := time.Duration(e.Delay.Latency); l < MinDelay || l > MaxDelay {
				p.addf(path+".delay.latency", "must be between %s and %s, got %s", Duration(MinDelay), Duration(MaxDelay), e.Delay.Latency)
			}
			if j := e.Delay.Jitter; j < 0 || j > e.Delay.Latency {
				p.addf(path+".delay.jitter", "must be between 0s and the latency %s, got %s", e.Delay.Latency, j)
			}
		}
		if e.Loss != nil {
			if _, err := ParseLoss(e.Loss.Loss); err != nil {
				p.addf(path+".loss.loss", "%v", err)
			}
		}
		if b := e.Bandwidth; b != nil {
			if _, err := ParseRate(b.Rate); err != nil {
				p.addf(path+".bandwidth.rate", "%v", err)
			}
			if b.Buffer != 0 && b.Buffer < MinTBFBuffer {
				p.addf(path+".bandwidth.buffer", "must be at least %d bytes (one full-size packet), got %d", MinTBFBuffer, b.Buffer)
			}
		}
	}
}

func checkMode(p *problems, path, mode, value string) {
	switch mode {
	case "", "all", "one":
		if value != "" {
			p.addf(path+".value", "mode %q takes no value", mode)
		}
	case "fixed":
		if n, err := strconv.Atoi(value); err != nil || n < 1 {
			p.addf(path+".value", "mode fixed needs a pod count >= 1, got %q", value)
		}
	case "fixed-percent":
		if n, err := strconv.Atoi(value); err != nil || n < 1 || n > 100 {
			p.addf(path+".value", "mode fixed-percent needs a percentage 1..100, got %q", value)
		}
	default:
		p.addf(path+".mode", "unknown mode %q (want one of %s)", mode, strings.Join(ChaosModes, ", "))
	}
}

func (s *Scenario) validateSelector(p *problems, path string, sel *ChaosSelector) {
	if len(sel.Pods)+len(sel.Services)+len(sel.Nodes) == 0 {
		p.addf(path, "must select pods, services or nodes")
		return
	}
	nodes, perNode := s.Topology.Nodes, s.Topology.PodsPerNode
	for i, name := range sel.Pods {
		m := podNameRE.FindStringSubmatch(name)
		if m == nil {
			p.addf(indexPath(path+".pods", i), "%q is not a pod name (pods are n<node>-p<index>, such as n1-p0)", name)
			continue
		}
		n, _ := strconv.Atoi(m[1])
		k, _ := strconv.Atoi(m[2])
		if n >= nodes || k >= perNode {
			p.addf(indexPath(path+".pods", i), "no pod %q in a topology of %d nodes × %d pods", name, nodes, perNode)
		}
	}
	for i, name := range sel.Services {
		if !slices.ContainsFunc(s.Topology.Services, func(v Service) bool { return v.Name == name }) {
			p.addf(indexPath(path+".services", i), "no service named %q", name)
		}
	}
	for i, name := range sel.Nodes {
		m := nodeNameRE.FindStringSubmatch(name)
		if m == nil {
			p.addf(indexPath(path+".nodes", i), "%q is not a node name (nodes are n0, n1, ...)", name)
			continue
		}
		if n, _ := strconv.Atoi(m[1]); n >= nodes {
			p.addf(indexPath(path+".nodes", i), "no node %q in a topology of %d nodes", name, nodes)
		}
	}
}

// checkChaosDatapaths reports, through add, chaos entries that a datapath
// of the scenario would make silently do nothing. Under a per-node proxy
// (catalog.NodeProxy) pods exchange traffic through their nodes' proxies:
// a pod receives its peers' packets from its node's address and sends its
// own to its node, so no packet carries both ends of a pod pair, and a
// fault between two sets of pods cannot be told apart from the rest of
// the nodes' traffic.
func (s *Scenario) checkChaosDatapaths(add func(path, format string, args ...any)) {
	if !slices.ContainsFunc(s.Datapaths, func(dp string) bool { b, _ := catalog.Split(dp); return b == catalog.NodeProxy }) {
		return
	}
	for i, e := range s.Chaos {
		if e.Target == nil || !slices.Contains([]string{FaultDelay, FaultLoss, FaultPartition}, e.Fault) {
			continue
		}
		add(indexPath("chaos", i)+".target",
			"datapath %s carries pod-to-pod traffic through per-node proxies, so a pod sees its peers' packets come from its node's address: "+
				"a %s between two sets of pods matches nothing there. Drop the target (the fault then acts on all the selected pods' traffic) "+
				"or leave %s out of datapaths", catalog.NodeProxy, e.Fault, catalog.NodeProxy)
	}
}
