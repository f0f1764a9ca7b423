package proxy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/datapaths/controlplane"
	"github.com/meshbench/meshbench/internal/golden"
)

func TestEnvoyBootstrap(t *testing.T) {
	b, err := EnvoyBootstrap("sidecar~pod-a", "meshbench", "/run/meshbench/xds.sock", "127.0.0.1:15000")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatal(err)
	}
	j, err := BootstrapJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("testdata", "bootstrap.golden.json"), j)
	y, err := BootstrapYAML(b)
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("testdata", "bootstrap.golden.yaml"), y)
	if !strings.Contains(string(y), "path: /run/meshbench/xds.sock") {
		t.Errorf("bootstrap does not reach the control plane over its unix socket:\n%s", y)
	}
	for _, tc := range []struct{ name, node, sock, admin string }{
		{"no node", "", "/x.sock", "127.0.0.1:15000"},
		{"no socket", "n", "", "127.0.0.1:15000"},
		{"bad admin", "n", "/x.sock", "15000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := EnvoyBootstrap(tc.node, "c", tc.sock, tc.admin); err == nil {
				t.Error("no error")
			}
		})
	}
}

func TestParseEnvoyStats(t *testing.T) {
	m, err := ParseEnvoyStats(strings.NewReader("cluster.x.upstream_rq_total: 12\nserver.state: 0\nhist: P0(nan,1)\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m["cluster.x.upstream_rq_total"] != 12 || len(m) != 2 {
		t.Errorf("got %v", m)
	}
}

// TestEnvoyEngine runs Envoy against the control plane when one is on
// PATH.
func TestEnvoyEngine(t *testing.T) {
	if _, err := EnvoyAvailable(""); err != nil {
		t.Skip("no envoy binary on PATH (no registry ships one for this machine)")
	}
	env := newEnv(t)
	env.set(t, controlplane.Model{Services: []controlplane.Service{{Name: "echo", Port: 8080, VIP: vip}}})
	e := NewEnvoy(EnvoyOptions{XDSSocket: env.cp.SocketPath(), NodeID: "sidecar~envoy", AdminAddr: "127.0.0.1:15900", ConfigDir: t.TempDir()})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Stop(context.Background())
	if err := e.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	if err := env.cp.WaitAcked(ctx, env.cp.Version(), []string{"sidecar~envoy"}); err != nil {
		t.Fatal(err)
	}
}

func TestEnvoyMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	err := NewEnvoy(EnvoyOptions{XDSSocket: "/x.sock", NodeID: "n"}).Start(context.Background())
	if !errors.Is(err, ErrEnvoyNotFound) {
		t.Errorf("Start = %v, want ErrEnvoyNotFound", err)
	}
}

func TestResolveEngine(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no envoy anywhere
	exe := filepath.Join(t.TempDir(), "envoy")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in, binary, want string
		notSupported     bool
		err              bool
	}{
		{in: "auto", want: "builtin"},
		{in: "", want: "builtin"},
		{in: "builtin", want: "builtin"},
		{in: "envoy", notSupported: true, err: true},
		{in: "nginx", err: true},
		{in: "auto", binary: exe, want: "envoy"},
		{in: "envoy", binary: exe, want: "envoy"},
		{in: "builtin", binary: exe, want: "builtin"},
	}
	for _, tt := range tests {
		got, err := ResolveEngine(tt.in, tt.binary)
		if got != tt.want || (err != nil) != tt.err || errors.Is(err, datapaths.ErrNotSupported) != tt.notSupported {
			t.Errorf("ResolveEngine(%q, %q) = %q, %v", tt.in, tt.binary, got, err)
		}
	}
}
