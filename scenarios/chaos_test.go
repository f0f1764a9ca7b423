package scenarios

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

const chaosBase = `
topology:
  nodes: 2
  pods_per_node: 2
  services: [{name: echo, replicas: 2}]
load:
  rates: [100]
  duration: 10s
chaos:
`

func TestChaosValid(t *testing.T) {
	s, err := Parse("c.yaml", []byte(chaosBase+`
  - name: slow
    at: 2s
    duration: 3s
    fault: delay
    selector: {services: [echo]}
    mode: one
    direction: to
    delay: {latency: 20ms, jitter: 1ms}
  - at: 1s
    duration: 1s
    fault: partition
    selector: {pods: [n0-p0]}
    target: {selector: {nodes: [n1]}}
  - at: 0s
    duration: 2s
    fault: loss
    selector: {pods: [n1-p0]}
    loss: {loss: "10"}
  - at: 5s
    duration: 1s
    fault: bandwidth
    selector: {pods: [n1-p1]}
    bandwidth: {rate: 1mbps}
  - at: 5s
    duration: 1s
    fault: pod-kill
    selector: {services: [echo]}
    mode: fixed
    value: "1"
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Chaos) != 5 {
		t.Fatalf("got %d entries", len(s.Chaos))
	}
	e := s.Chaos[0]
	if e.Name != "slow" || time.Duration(e.At) != 2*time.Second || time.Duration(e.Delay.Latency) != 20*time.Millisecond || e.Selector.Services[0] != "echo" {
		t.Errorf("entry 0 = %+v", e)
	}
	if got := s.Chaos[1].ChaosName(1); got != "partition-1" {
		t.Errorf("ChaosName = %q", got)
	}
}

func TestChaosErrors(t *testing.T) {
	tests := []struct {
		name, entry, want string
	}{
		{"unknown fault", "  - {at: 1s, duration: 1s, fault: explode, selector: {pods: [n0-p0]}}", `c.yaml:10: chaos[0].fault: unknown fault "explode"`},
		{"at past load", "  - {at: 10s, duration: 1s, fault: pod-kill, selector: {pods: [n0-p0]}}", "c.yaml:10: chaos[0].at: must be between 0s and the load duration 10s"},
		{"no selector", "  - at: 1s\n    duration: 1s\n    fault: pod-kill", "c.yaml:10: chaos[0].selector: must select pods"},
		{"missing params", "  - at: 1s\n    duration: 1s\n    fault: delay\n    selector: {pods: [n0-p0]}", "c.yaml:10: chaos[0].delay: the delay fault needs delay parameters"},
		{"wrong params", "  - at: 1s\n    duration: 1s\n    fault: pod-kill\n    selector: {pods: [n0-p0]}\n    loss: {loss: \"5\"}", "c.yaml:14: chaos[0].loss: only the loss fault takes loss parameters"},
		{"bad loss", "  - at: 1s\n    duration: 1s\n    fault: loss\n    selector: {pods: [n0-p0]}\n    loss:\n      loss: \"120\"", "c.yaml:15: chaos[0].loss.loss: loss \"120\""},
		{"bad pod", "  - at: 1s\n    duration: 1s\n    fault: pod-kill\n    selector:\n      pods: [n0-p0, n5-p0]", `c.yaml:14: chaos[0].selector.pods[1]: no pod "n5-p0"`},
		{"bad node", "  - at: 1s\n    duration: 1s\n    fault: pod-kill\n    selector:\n      nodes: [node1]", `chaos[0].selector.nodes[0]: "node1" is not a node name`},
		{"partition needs target", "  - at: 1s\n    duration: 1s\n    fault: partition\n    selector: {pods: [n0-p0]}", "chaos[0].target: a partition needs a target"},
		{"bad rate", "  - at: 1s\n    duration: 1s\n    fault: bandwidth\n    selector: {pods: [n0-p0]}\n    bandwidth: {rate: fast}", `chaos[0].bandwidth.rate: rate "fast"`},
		{"bad mode", "  - at: 1s\n    duration: 1s\n    fault: pod-kill\n    selector: {pods: [n0-p0]}\n    mode: some", `chaos[0].mode: unknown mode "some"`},
		{"unknown field", "  - at: 1s\n    duration: 1s\n    fault: pod-kill\n    selectr: {pods: [n0-p0]}", `c.yaml:13: unknown field "selectr" in chaos[0]`},
		{"wrong type", "  - at: soon\n    duration: 1s\n    fault: pod-kill\n    selector: {pods: [n0-p0]}", "c.yaml:10: chaos[0].at:"},
		{"jitter above latency", "  - at: 1s\n    duration: 1s\n    fault: delay\n    selector: {pods: [n0-p0]}\n    delay: {latency: 2ms, jitter: 5ms}", "chaos[0].delay.jitter: must be between 0s and the latency 2ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("c.yaml", []byte(chaosBase+tt.entry+"\n"))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestParseRateLoss(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want uint64
		ok   bool
	}{{"1mbps", 1e6, true}, {"800kbps", 8e5, true}, {"1.5gbps", 1.5e9, true}, {"1bps", 0, false}, {"10", 0, false}} {
		got, err := ParseRate(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseRate(%q) = %d, %v", tt.in, got, err)
		}
	}
	if p, err := ParseLoss("10"); err != nil || p != 0.1 {
		t.Errorf("ParseLoss(10) = %v, %v", p, err)
	}
	if _, err := ParseLoss("0"); err == nil {
		t.Error("ParseLoss(0) succeeded")
	}
}

func TestChaosResolvedRoundTrip(t *testing.T) {
	s, err := Parse("c.yaml", []byte(chaosBase+`
  - {name: slow, at: 2s, duration: 3s, fault: delay, selector: {services: [echo]}, delay: {latency: 20ms}}
  - {at: 1s, duration: 1s, fault: partition, selector: {pods: [n0-p0]}, target: {selector: {nodes: [n1]}, mode: one}}
  - {at: 5s, duration: 1s, fault: bandwidth, selector: {pods: [n1-p1]}, direction: from, bandwidth: {rate: 1mbps, buffer: 3200}}
`))
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.Resolved()
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse("resolved.json", out)
	if err != nil {
		t.Fatalf("parse resolved: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(s.Chaos, again.Chaos) {
		t.Errorf("round trip changed chaos:\n%+v\n%+v", s.Chaos, again.Chaos)
	}
}

// TestChaosRejectsPairFaultsUnderNodeProxy checks that a fault between two
// sets of pods, which nothing could match under a per-node proxy, is
// rejected where it is written, and when the datapaths come from a flag.
func TestChaosRejectsPairFaultsUnderNodeProxy(t *testing.T) {
	entry := "  - at: 1s\n    duration: 1s\n    fault: partition\n    selector: {pods: [n0-p0]}\n    target: {selector: {pods: [n1-p0]}}\n"
	_, err := Parse("c.yaml", []byte("datapaths: [none, nodeproxy]\n"+chaosBase+entry))
	if err == nil || !strings.Contains(err.Error(), "c.yaml:15: chaos[0].target: datapath nodeproxy carries pod-to-pod traffic through per-node proxies") {
		t.Errorf("error = %v, want chaos[0].target rejected at line 15", err)
	}
	s, err := Parse("c.yaml", []byte("datapaths: [none, sidecar]\n"+chaosBase+entry))
	if err != nil {
		t.Fatalf("without nodeproxy: %v", err)
	}
	err = s.WithDatapaths([]string{"none", "nodeproxy"})
	if err == nil || !strings.Contains(err.Error(), "chaos[0].target: datapath nodeproxy") {
		t.Errorf("WithDatapaths(nodeproxy) = %v, want chaos[0].target rejected", err)
	}
	if !slices.Equal(s.Datapaths, []string{"none", "sidecar"}) {
		t.Errorf("datapaths changed to %v after a refused WithDatapaths", s.Datapaths)
	}
	// Without a target, the fault acts on the pods' own traffic: allowed.
	if _, err := Parse("c.yaml", []byte("datapaths: [nodeproxy]\n"+chaosBase+
		"  - {at: 1s, duration: 1s, fault: loss, selector: {pods: [n1-p0]}, direction: from, loss: {loss: \"5\"}}\n")); err != nil {
		t.Errorf("loss without a target under nodeproxy: %v", err)
	}
}

func TestReadinessProbe(t *testing.T) {
	s, err := Parse("p.yaml", []byte(`
topology:
  services:
    - name: a
      readiness_probe: {period: 250ms, failure_threshold: 3}
    - name: b
      readiness_probe: {period: 5s, timeout: 2s, success_threshold: 2}
load:
  rates: [100]
`))
	if err != nil {
		t.Fatal(err)
	}
	a, b := s.Topology.Services[0].ReadinessProbe, s.Topology.Services[1].ReadinessProbe
	if want := (Probe{Period: Duration(250 * time.Millisecond), Timeout: Duration(250 * time.Millisecond), FailureThreshold: 3, SuccessThreshold: 1}); a != want {
		t.Errorf("probe a = %+v, want %+v (timeout defaults to the period when that is under 1s)", a, want)
	}
	if want := (Probe{Period: Duration(5 * time.Second), Timeout: Duration(2 * time.Second), FailureThreshold: 1, SuccessThreshold: 2}); b != want {
		t.Errorf("probe b = %+v, want %+v", b, want)
	}
	for _, tt := range []struct{ probe, want string }{
		{"{period: 1ms}", "p.yaml:5: topology.services[0].readiness_probe.period: must be between 10ms and 1m, got 1ms"},
		{"{period: 1s, timeout: 2s}", "topology.services[0].readiness_probe.timeout: must be > 0 and at most the period 1s"},
		{"{failure_threshold: 0}", "topology.services[0].readiness_probe.failure_threshold: must be between 1 and 100"},
	} {
		_, err := Parse("p.yaml", []byte("topology:\n  services:\n    - name: a\n      readiness_probe:\n        "+
			strings.NewReplacer("{", "", "}", "", ", ", "\n        ").Replace(tt.probe)+"\nload:\n  rates: [100]\n"))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("probe %s: error = %v, want %q", tt.probe, err, tt.want)
		}
	}
}
