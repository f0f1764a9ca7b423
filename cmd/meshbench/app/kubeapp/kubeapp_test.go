package kubeapp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

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
