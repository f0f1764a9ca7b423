package kubeapp

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

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

// TestPushImage pushes the meshbench image to a registry on loopback
// (go-containerregistry's, in memory) and reads it back by the digest
// reference the pods would run.
func TestPushImage(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	bin := filepath.Join(t.TempDir(), "some-binary")
	if err := os.WriteFile(bin, []byte("#!not really a binary\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	repo := strings.TrimPrefix(srv.URL, "http://") + "/team"
	ref, err := pushImage(context.Background(), bin, repo)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pushed %s", ref)
	if !strings.HasPrefix(ref, repo+"/meshbench@sha256:") {
		t.Errorf("reference %q, want %s/meshbench@sha256:…", ref, repo)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		t.Fatalf("pull %s back: %v", ref, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != "/meshbench" || cfg.OS != "linux" {
		t.Errorf("config %+v: want entrypoint /meshbench on linux", cfg.Config)
	}
	if _, err := pushImage(context.Background(), bin, "Not A Repo"); err == nil || !strings.Contains(err.Error(), "--image-repo") {
		t.Errorf("push to an invalid repository: %v", err)
	}
}
