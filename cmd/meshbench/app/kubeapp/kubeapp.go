// Package kubeapp is the Kubernetes side of the command line: imported by
// the meshbench-kube binary, it sets app.Kube. The meshbench binary does
// not import it, so the processes the harness starts in pods (which run
// meshbench) carry no Kubernetes client libraries.
package kubeapp

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshbench/meshbench/cmd/meshbench/app"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/harness/testbed/kube"
	"github.com/meshbench/meshbench/internal/atomicfile"
	"github.com/meshbench/meshbench/internal/kubeenv"
	"github.com/meshbench/meshbench/internal/staticbin"
)

func init() { app.Kube = side{} }

type side struct{}

// Provider returns the kube provider the flags describe, once the cluster
// has answered: a wrong kubeconfig or an unreachable server is reported
// before anything is created, the output directory included.
func (side) Provider(f app.ProviderFlags, logger *slog.Logger) (testbed.Provider, error) {
	if _, err := kube.Connect(context.Background(), kube.Options{Kubeconfig: f.Kubeconfig, Context: f.Context, Log: logger}); err != nil {
		return nil, err
	}
	return kube.NewProvider(kube.ProviderOptions{
		Kubeconfig: f.Kubeconfig, Context: f.Context, Log: logger,
		Image: kube.Image{Ref: f.Image, PullPolicy: corev1.PullPolicy(f.ImagePull)},
	}), nil
}

// Diagnose checks the cluster for `doctor --provider kube`.
func (side) Diagnose(ctx context.Context, kubeconfig, kubeContext string) ([]string, error) {
	return kube.Diagnose(ctx, kube.Options{Kubeconfig: kubeconfig, Context: kubeContext})
}

// Image builds the meshbench image in-process (go-containerregistry: no
// daemon, no base image) as a tar that `ctr image import`, `docker load`
// or `kind load image-archive` accept. It packs meshbench (the lean
// sibling of this binary), which is what runs in the pods.
func (side) Image(ctx context.Context, ref, out string, stdout io.Writer) error {
	bin, err := app.LeanBinary()
	if err != nil {
		return err
	}
	if err := staticbin.Check(bin); err != nil {
		return err
	}
	// The image holds the binary as /meshbench.
	dir, err := os.MkdirTemp("", "meshbench-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	dst := filepath.Join(dir, "meshbench")
	in, err := os.Open(bin)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := atomicfile.Write(dst, 0o755, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	}); err != nil {
		return err
	}
	if err := kubeenv.BuildImage(ref, dst, nil, out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: image %s of %s (load it with 'ctr -n k8s.io image import', 'docker load' or 'kind load image-archive')\n", out, ref, bin)
	return nil
}
