package kubeapp

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshbench/meshbench/cmd/meshbench/app"
	"github.com/meshbench/meshbench/harness/testbed"
)

// A kubeconfig that cannot be loaded is reported, naming it, before
// anything is created.
func TestBenchBadKubeconfig(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	missing := filepath.Join(dir, "no-such-kubeconfig")
	err := app.Run(context.Background(), []string{"bench", "../../../../scenarios/quick.yaml", "--provider", "kube",
		"--image", "meshbench.local/meshbench:test", "--kubeconfig", missing, "--out", out}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("err = %v, want it to name %s", err, missing)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("output directory created before the cluster answered (stat: %v)", err)
	}
}

// noDockerEngine skips the test when a Docker engine answers: the kind
// provider would then really create clusters (TestKindProvider does).
func noDockerEngine(t *testing.T) {
	t.Helper()
	if err := exec.Command("docker", "info").Run(); err == nil {
		t.Skip("a Docker engine answers here: this test is for a host without one")
	}
}

// Without a Docker engine, bench --provider kind fails before anything
// is created, the output directory included: on the binary it would pack
// (this test binary, unless it is static) or on the missing engine.
func TestBenchKindWithoutDocker(t *testing.T) {
	noDockerEngine(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	err := app.Run(context.Background(), []string{"bench", "../../../../scenarios/quick.yaml", "--provider", "kind", "--out", out}, &bytes.Buffer{}, &bytes.Buffer{})
	t.Logf("bench --provider kind: %v", err)
	if err == nil || !(strings.Contains(err.Error(), "CGO_ENABLED=0") || errors.Is(err, testbed.ErrNotSupported)) {
		t.Fatalf("err = %v, want the static-binary or the no-Docker error", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("output directory created before the provider could run (stat: %v)", err)
	}
}

// down --provider kind reaches the kind provider, which says that no
// Docker engine answers.
func TestDownKindWithoutDocker(t *testing.T) {
	noDockerEngine(t)
	err := app.Run(context.Background(), []string{"down", "--provider", "kind"}, &bytes.Buffer{}, &bytes.Buffer{})
	if !errors.Is(err, testbed.ErrNotSupported) || !strings.Contains(err.Error(), "Docker") {
		t.Fatalf("err = %v, want the kind provider's no-Docker error", err)
	}
}
