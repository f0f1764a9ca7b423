package sidecar

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/datapaths/controlplane"
	"github.com/meshbench/meshbench/internal/golden"
	"github.com/meshbench/meshbench/scenarios"
)

// The rule set is the one istio-iptables installs; the golden file is what
// reviewers compare with Istio's.
func TestRulesGolden(t *testing.T) {
	golden.Check(t, filepath.Join("testdata", "rules.golden"), []byte(Rules(DefaultRuleOptions())))
}

func TestRemoveRulesUndoesEveryChain(t *testing.T) {
	rm := removeRules(DefaultRuleOptions())
	for _, c := range chains {
		if !strings.Contains(rm, "-X "+c+"\n") {
			t.Errorf("removal does not delete chain %s", c)
		}
		if !strings.Contains(Rules(DefaultRuleOptions()), ":"+c+" ") {
			t.Errorf("rules do not create chain %s", c)
		}
	}
}

func TestMeshModel(t *testing.T) {
	mesh := scenarios.DefaultMeshPolicy()
	mesh.LBPolicy = "MAGLEV"
	mesh.HashHeader = "x-user"
	mesh.CircuitBreakers.MaxRequests = 7
	mesh.Retries.Attempts = 2
	svcs := []*datapaths.Service{{Name: "echo", Port: 8080, Mesh: mesh}, {Name: "plain", Port: 9000}}
	m := controlplane.ModelOf(svcs, []string{"sidecar~client"})
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	got := m.Services[0]
	if got.LBPolicy != controlplane.Maglev || got.HashHeader != "x-user" || got.CircuitBreakers.MaxRequests != 7 || got.Retries.Attempts != 2 {
		t.Errorf("service settings not carried: %+v", got)
	}
	if p := m.Services[1]; p.LBPolicy != controlplane.RoundRobin || p.Protocol != controlplane.HTTP {
		t.Errorf("a service without settings gets the defaults, got %+v", p)
	}
}
