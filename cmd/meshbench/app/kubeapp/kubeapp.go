// Package kubeapp is the Kubernetes side of the command line: imported by
// the meshbench-kube binary, it sets app.Kube. The meshbench binary does
// not import it, so the processes the harness starts in pods (which run
// meshbench) carry no Kubernetes client libraries, and no kind.
package kubeapp

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshbench/meshbench/cmd/meshbench/app"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/harness/testbed/kind"
	"github.com/meshbench/meshbench/harness/testbed/kube"
	"github.com/meshbench/meshbench/internal/staticbin"
)

func init() { app.Kube = side{} }

type side struct{}

// Provider returns the provider the flags describe, once what it needs
// has answered, before anything is created (the output directory
// included): for kube, the cluster (a wrong kubeconfig or an unreachable
// server is reported); for kind, a Docker engine.
func (side) Provider(f app.ProviderFlags, logger *slog.Logger) (testbed.Provider, error) {
	if f.Name == "kind" {
		bin, err := app.LeanBinary()
		if err != nil {
			return nil, err
		}
		p := kind.NewProvider(kind.ProviderOptions{Binary: bin, Retain: f.Retain, Log: logger})
		if err := p.Check(context.Background()); err != nil {
			return nil, err
		}
		return p, nil
	}
	if _, err := kube.Connect(context.Background(), kube.Options{Kubeconfig: f.Kubeconfig, Context: f.Context, Log: logger}); err != nil {
		return nil, err
	}
	pull := corev1.PullPolicy(f.ImagePull)
	if pull == "" {
		pull = corev1.PullIfNotPresent
	}
	ref := f.Image
	if f.ImageRepo != "" {
		bin, err := app.LeanBinary()
		if err != nil {
			return nil, err
		}
		if err := staticbin.Check(bin); err != nil {
			return nil, err
		}
		logger.Info("kube: pushing the meshbench image", "repository", f.ImageRepo, "binary", bin)
		ctx, cancel := context.WithTimeout(context.Background(), pushTimeout)
		defer cancel()
		if ref, err = pushImage(ctx, bin, f.ImageRepo); err != nil {
			return nil, err
		}
		logger.Info("kube: image pushed", "ref", ref)
	}
	return kube.NewProvider(kube.ProviderOptions{
		Kubeconfig: f.Kubeconfig, Context: f.Context, Log: logger,
		Image: kube.Image{Ref: ref, PullPolicy: pull},
	}), nil
}

// Diagnose checks the cluster for `doctor --provider kube`.
func (side) Diagnose(ctx context.Context, kubeconfig, kubeContext string) ([]string, error) {
	return kube.Diagnose(ctx, kube.Options{Kubeconfig: kubeconfig, Context: kubeContext})
}

// Image builds the meshbench image in-process (kind.BuildImage: no
// daemon, no base image) as a tar that `ctr image import`, `docker load`
// or `kind load image-archive` accept. It packs meshbench (the lean
// sibling of this binary), which is what runs in the pods.
func (side) Image(ctx context.Context, ref, out string, stdout io.Writer) error {
	bin, err := app.LeanBinary()
	if err != nil {
		return err
	}
	if err := kind.BuildImage(ref, bin, out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: image %s of %s (load it with 'ctr -n k8s.io image import', 'docker load' or 'kind load image-archive')\n", out, ref, bin)
	return nil
}
