package kubeapp

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshbench/meshbench/cmd/meshbench/app"
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
