package nodeproxy

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/datapaths/fleet"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/scenarios"
)

func TestEngine(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no envoy on PATH
	envoy := filepath.Join(t.TempDir(), "envoy")
	if err := os.WriteFile(envoy, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	svcs := func(engines ...string) []*datapaths.Service {
		var out []*datapaths.Service
		for i, e := range engines {
			out = append(out, &datapaths.Service{Name: string(rune('a' + i)), Mesh: scenarios.MeshPolicy{Engine: e}})
		}
		return out
	}
	tests := []struct {
		name         string
		services     []*datapaths.Service
		binary       string
		want         string
		errHas       string
		notSupported bool
	}{
		{name: "auto without envoy", services: svcs("auto", "auto"), want: "builtin"},
		{name: "auto with envoy", services: svcs("auto"), binary: envoy, want: "envoy"},
		{name: "builtin with envoy", services: svcs("builtin", "auto"), binary: envoy, want: "builtin"},
		{name: "envoy", services: svcs("auto", "envoy"), binary: envoy, want: "envoy"},
		{name: "envoy without a binary", services: svcs("envoy"), errHas: "engine envoy", notSupported: true},
		{name: "services disagree", services: svcs("builtin", "auto", "envoy"), binary: envoy,
			errHas: `service "a" has mesh.engine "builtin" but service "c" has "envoy" (topology.services[0] and [2])`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Engine(tt.services, tt.binary)
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) || errors.Is(err, datapaths.ErrNotSupported) != tt.notSupported {
					t.Fatalf("Engine = %q, %v; want an error with %q (not supported: %v)", got, err, tt.errHas, tt.notSupported)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Engine = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestProxyArgs(t *testing.T) {
	f := &fleet.Fleet{Socket: "/run/meshbench/x/xds.sock", Dir: "/run/meshbench/x"}
	n := &testbed.Node{Name: "n1"}
	exec := []string{"/usr/bin/meshbench"}
	b := proxyArgs(exec, f, n, "builtin", "")
	if !slices.Contains(b, "--inbound-original-ip") || slices.Contains(b, "--envoy-binary") || !hasFlag(b, "--engine", "builtin") {
		t.Errorf("builtin: %q", b)
	}
	e := proxyArgs(exec, f, n, "envoy", "/opt/envoy")
	if !hasFlag(e, "--engine", "envoy") || !hasFlag(e, "--envoy-binary", "/opt/envoy") || !hasFlag(e, "--config-dir", f.Dir) || !hasFlag(e, "--node-id", "nodeproxy~n1") {
		t.Errorf("envoy: %q", e)
	}
	if e[0] != exec[0] || e[1] != "proxy" {
		t.Errorf("envoy: runs %q, want the harness's proxy subcommand", e[:2])
	}
}

func hasFlag(args []string, flag, value string) bool {
	i := slices.Index(args, flag)
	return i >= 0 && i+1 < len(args) && args[i+1] == value
}
