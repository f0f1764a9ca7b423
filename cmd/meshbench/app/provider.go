package app

import (
	"context"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/harness/testbed/kube"
	"github.com/meshbench/meshbench/harness/testbed/netns"
	"github.com/meshbench/meshbench/internal/kubeenv"
	"github.com/meshbench/meshbench/scenarios"
)

// providerFlags choose and configure the cluster provider.
type providerFlags struct {
	name       string
	kubeconfig string
	context    string
	image      string
	imagePull  string
}

func (f *providerFlags) register(fs *flag.FlagSet, withImage bool) {
	fs.StringVar(&f.name, "provider", "", "cluster provider: "+strings.Join(scenarios.KnownProviders, " or ")+" (default: the scenario's, else netns)")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kube: kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
	fs.StringVar(&f.context, "context", "", "kube: kubeconfig context (default: the current one)")
	if withImage {
		fs.StringVar(&f.image, "image", "", "kube: the meshbench image the cluster runs, with a static meshbench at /meshbench ('meshbench image' builds one)")
		fs.StringVar(&f.imagePull, "image-pull", string(corev1.PullIfNotPresent), "kube: the pods' image pull policy: IfNotPresent, Always, or Never for an image loaded into the nodes")
	}
}

// resolve returns the provider's name (the flag's, else the scenario's,
// else netns) and checks the flags fit it, before anything is created.
func (f *providerFlags) resolve(scenario string) (string, error) {
	name := f.name
	if name == "" {
		name = scenario
	}
	if name == "" {
		name = scenarios.KnownProviders[0]
	}
	if !slices.Contains(scenarios.KnownProviders, name) {
		return "", fmt.Errorf("%w: --provider %q: want one of %s", ErrUsage, name, strings.Join(scenarios.KnownProviders, ", "))
	}
	if name != "kube" {
		for flagName, v := range map[string]string{"kubeconfig": f.kubeconfig, "context": f.context, "image": f.image} {
			if v != "" {
				return "", fmt.Errorf("%w: --%s applies to --provider kube only", ErrUsage, flagName)
			}
		}
		return name, nil
	}
	switch corev1.PullPolicy(f.imagePull) {
	case "", corev1.PullIfNotPresent, corev1.PullAlways, corev1.PullNever:
	default:
		return "", fmt.Errorf("%w: --image-pull %q: want IfNotPresent, Always or Never", ErrUsage, f.imagePull)
	}
	return name, nil
}

// provider returns the provider named name (as resolve returned it).
func (f *providerFlags) provider(name string, needImage bool, logger *slog.Logger) (testbed.Provider, error) {
	if name != "kube" {
		if os.Geteuid() != 0 {
			return nil, errors.New("the netns provider needs root to create network namespaces, cgroups and BPF programs: run it with sudo")
		}
		return netns.New(netns.Options{Logger: logger}), nil
	}
	if needImage && f.image == "" {
		return nil, fmt.Errorf("%w: --provider kube needs --image: an image the cluster can pull holding a static meshbench at /meshbench (build one with 'meshbench image --out meshbench.tar', then load it into the nodes or push it)", ErrUsage)
	}
	return kube.NewProvider(kube.ProviderOptions{
		Kubeconfig: f.kubeconfig, Context: f.context, Log: logger,
		Image: kube.Image{Ref: f.image, PullPolicy: corev1.PullPolicy(f.imagePull)},
	}), nil
}

// runImage builds the meshbench image from the running binary, in-process
// (go-containerregistry: no daemon, no base image), as a tar that `ctr
// image import`, `docker load` or `kind load image-archive` accept.
func runImage(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("image", stderr, "image --out FILE [--ref REF]")
	out := fs.String("out", "", "the image tar to write")
	ref := fs.String("ref", "meshbench.local/meshbench:latest", "the image's name and tag")
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if *out == "" {
		fs.Usage()
		return fmt.Errorf("%w: image needs --out", ErrUsage)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if err := checkStatic(exe); err != nil {
		return err
	}
	// The image holds the binary as /meshbench.
	dir, err := os.MkdirTemp("", "meshbench-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "meshbench")
	if err := copyFile(exe, bin); err != nil {
		return err
	}
	if err := kubeenv.BuildImage(*ref, bin, nil, *out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: image %s (load it with 'ctr -n k8s.io image import', 'docker load' or 'kind load image-archive')\n", *out, *ref)
	return nil
}

// checkStatic fails for a dynamically linked binary: the image has no libc.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("image: read %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("image: %s is dynamically linked, and the image has no C library: build meshbench with CGO_ENABLED=0", path)
		}
	}
	return nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
