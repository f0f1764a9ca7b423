package netns

import (
	"strings"
	"testing"

	"github.com/meshbench/meshbench/harness/testbed"
)

func TestValidateSpec(t *testing.T) {
	pods := func(names ...string) []testbed.PodSpec {
		var out []testbed.PodSpec
		for _, n := range names {
			out = append(out, testbed.PodSpec{Name: n})
		}
		return out
	}
	tests := []struct {
		name    string
		spec    testbed.Spec
		wantErr string
	}{
		{"ok", testbed.Spec{RunID: "ab12cd34", Nodes: 2, Pods: pods("client", "n1-p0")}, ""},
		{"one hex digit", testbed.Spec{RunID: "a", Nodes: 1}, ""},
		{"empty id", testbed.Spec{RunID: "", Nodes: 1}, "run id"},
		{"upper-case id", testbed.Spec{RunID: "AB", Nodes: 1}, "run id"},
		{"long id", testbed.Spec{RunID: "123456789", Nodes: 1}, "run id"},
		{"non-hex id", testbed.Spec{RunID: "xyz", Nodes: 1}, "run id"},
		{"no nodes", testbed.Spec{RunID: "a", Nodes: 0}, "nodes 0"},
		{"too many nodes", testbed.Spec{RunID: "a", Nodes: MaxNodes + 1}, "nodes"},
		{"upper-case pod", testbed.Spec{RunID: "a", Nodes: 1, Pods: pods("Bad")}, "pod name"},
		{"trailing dash", testbed.Spec{RunID: "a", Nodes: 1, Pods: pods("bad-")}, "pod name"},
		{"long pod name", testbed.Spec{RunID: "a", Nodes: 1, Pods: pods(strings.Repeat("a", 33))}, "pod name"},
		{"fabric name", testbed.Spec{RunID: "a", Nodes: 1, Pods: pods("fab")}, "reserved"},
		{"node netns name", testbed.Spec{RunID: "a", Nodes: 1, Pods: pods("n12")}, "reserved"},
		{"node cgroup name", testbed.Spec{RunID: "a", Nodes: 1, Pods: pods("node-0")}, "reserved"},
		{"duplicate", testbed.Spec{RunID: "a", Nodes: 1, Pods: pods("x", "x")}, "twice"},
		{"node out of range", testbed.Spec{RunID: "a", Nodes: 1, Pods: []testbed.PodSpec{{Name: "x", Node: 1}}}, "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validateSpec(tt.spec)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("validateSpec: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("validateSpec error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestNames(t *testing.T) {
	// The longest names still fit IFNAMSIZ-1 = 15 bytes.
	for _, n := range []string{hostVethName("ffffffff", MaxPods-1), fabricVethName("ffffffff", MaxNodes-1)} {
		if len(n) > 15 {
			t.Errorf("interface name %q is %d bytes, more than 15", n, len(n))
		}
	}
	tests := []struct {
		name, id string
		want     bool
	}{
		{"mbab12p0", "ab12", true},
		{"mbab12u3", "ab12", true},
		{"mbab12p0", "ab1", false}, // run "ab1" is not run "ab12"
		{"mbab12", "ab12", false},
		{"eth0", "ab12", false},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/"+tt.id, func(t *testing.T) {
			if got := isRunLink(tt.name, tt.id); got != tt.want {
				t.Errorf("isRunLink(%q, %q) = %v, want %v", tt.name, tt.id, got, tt.want)
			}
			if got := anyLinkRe.MatchString(tt.name); got != (tt.name != "eth0" && tt.name != "mbab12") {
				t.Errorf("anyLinkRe matches %q: %v", tt.name, got)
			}
		})
	}
}

func TestAnyRunPatterns(t *testing.T) {
	tests := []struct {
		name string
		re   interface{ MatchString(string) bool }
		in   string
		want bool
	}{
		{"netns pod", anyNetnsRe, "mb-ab12cd34-client", true},
		{"netns fabric", anyNetnsRe, "mb-0-fab", true},
		{"netns no object", anyNetnsRe, "mb-ab12-", false},
		{"netns long id", anyNetnsRe, "mb-123456789-fab", false},
		{"netns other tool", anyNetnsRe, "cni-1234", false},
		{"netns upper case", anyNetnsRe, "mb-AB-fab", false},
		{"cgroup", anyCgroupRe, "meshbench-ab12", true},
		{"cgroup suffix", anyCgroupRe, "meshbench-ab12x", false},
		{"cgroup other", anyCgroupRe, "system.slice", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.re.MatchString(tt.in); got != tt.want {
				t.Errorf("match %q = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}
