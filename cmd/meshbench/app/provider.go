package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/harness/testbed/netns"
	"github.com/meshbench/meshbench/scenarios"
)

// ProviderFlags choose and configure the cluster provider.
type ProviderFlags struct {
	Name       string
	Kubeconfig string
	Context    string
	Image      string
	ImageRepo  string
	ImagePull  string
	// Retain is bench's --retain: the kind provider then keeps its
	// cluster too.
	Retain bool
}

// providerFlags is the command line's own name for them.
type providerFlags = ProviderFlags

// Kube is the Kubernetes side of the command line. Package kubeapp sets it
// in the meshbench-kube binary. It is nil in meshbench, which hands every
// command that needs Kubernetes to meshbench-kube (execKube): the
// Kubernetes client libraries nearly double the binary and add about
// 7 MiB of PSS to every process started from it, and the echo servers,
// load client and proxies in the pods are started from meshbench.
var Kube interface {
	// Provider returns the provider f.Name names, kube or kind, once it
	// has checked what it needs (the cluster answers; a Docker engine
	// answers).
	Provider(f ProviderFlags, logger *slog.Logger) (testbed.Provider, error)
	Diagnose(ctx context.Context, kubeconfig, kubeContext string) ([]string, error)
	Image(ctx context.Context, ref, out string, stdout io.Writer) error
}

// KubeBinary is the binary with the Kubernetes side, next to meshbench.
const KubeBinary = "meshbench-kube"

// needsKube says whether provider name is on the Kubernetes side (in
// meshbench-kube): kube, and kind, which runs kube on a cluster it makes.
func needsKube(name string) bool { return name == "kube" || name == "kind" }

// execKube replaces this process with meshbench-kube running args (a
// command and its arguments): found next to this executable, else on
// PATH.
func execKube(args []string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	path := filepath.Join(filepath.Dir(self), KubeBinary)
	if _, err := os.Stat(path); err != nil {
		p, lerr := exec.LookPath(KubeBinary)
		if lerr != nil {
			return fmt.Errorf("%s with --provider kube or kind needs %s, which carries the Kubernetes client and kind, and it is neither next to %s nor on PATH: 'make build' builds both", args[0], KubeBinary, self)
		}
		path = p
	}
	return syscall.Exec(path, append([]string{path}, args...), os.Environ())
}

func (f *providerFlags) register(fs *flag.FlagSet, withImage bool) {
	n := len(scenarios.KnownProviders)
	fs.StringVar(&f.Name, "provider", "", "cluster provider: "+strings.Join(scenarios.KnownProviders[:n-1], ", ")+" or "+scenarios.KnownProviders[n-1]+
		" (default: the scenario's, else netns); kind creates a kind cluster per datapath and repetition, on Docker")
	fs.StringVar(&f.Kubeconfig, "kubeconfig", "", "kube: kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
	fs.StringVar(&f.Context, "context", "", "kube: kubeconfig context (default: the current one)")
	if withImage {
		fs.StringVar(&f.Image, "image", "", "kube: the meshbench image the cluster runs, with a static meshbench at /meshbench ('meshbench image' builds one)")
		fs.StringVar(&f.ImageRepo, "image-repo", "", "kube: build the meshbench image and push it to this repository (e.g. registry.example.com/team), with your Docker credentials; the pods run it by digest")
		fs.StringVar(&f.ImagePull, "image-pull", "", "kube: the pods' image pull policy: IfNotPresent (the default), Always, or Never for an image loaded into the nodes")
	}
}

// resolve returns the provider's name (the flag's, else the scenario's,
// else netns) and checks the flags fit it, before anything is created.
func (f *providerFlags) resolve(scenario string) (string, error) {
	name := f.Name
	if name == "" {
		name = scenario
	}
	if name == "" {
		name = scenarios.KnownProviders[0]
	}
	if !slices.Contains(scenarios.KnownProviders, name) {
		return "", fmt.Errorf("%w: --provider %q: want one of %s", ErrUsage, name, strings.Join(scenarios.KnownProviders, ", "))
	}
	kubeOnly := []struct{ flag, value string }{
		{"kubeconfig", f.Kubeconfig}, {"context", f.Context}, {"image", f.Image}, {"image-repo", f.ImageRepo}, {"image-pull", f.ImagePull},
	}
	switch name {
	case "kube":
	case "kind":
		for _, k := range kubeOnly {
			if k.value == "" {
				continue
			}
			why := "it creates its own cluster, and its kubeconfig"
			if strings.HasPrefix(k.flag, "image") {
				why = "it builds the meshbench image from this meshbench and loads it into its nodes"
			}
			return "", fmt.Errorf("%w: --%s does not apply to --provider kind: %s", ErrUsage, k.flag, why)
		}
		return name, nil
	default:
		for _, k := range kubeOnly {
			if k.value != "" {
				return "", fmt.Errorf("%w: --%s applies to --provider kube only", ErrUsage, k.flag)
			}
		}
		return name, nil
	}
	if f.Image != "" && f.ImageRepo != "" {
		return "", fmt.Errorf("%w: --image and --image-repo: give one (an image the cluster can pull, or a repository to push the one meshbench builds)", ErrUsage)
	}
	switch f.ImagePull {
	case "", "IfNotPresent", "Always", "Never":
	default:
		return "", fmt.Errorf("%w: --image-pull %q: want IfNotPresent, Always or Never", ErrUsage, f.ImagePull)
	}
	return name, nil
}

// provider returns the provider named name (as resolve returned it).
func (f *providerFlags) provider(name string, logger *slog.Logger) (testbed.Provider, error) {
	if !needsKube(name) {
		if os.Geteuid() != 0 {
			return nil, errors.New("the netns provider needs root to create network namespaces, cgroups and BPF programs: run it with sudo")
		}
		return netns.New(netns.Options{Logger: logger}), nil
	}
	if Kube == nil {
		return nil, errors.New("the Kubernetes side is not in this binary (use meshbench-kube)")
	}
	pf := *f
	pf.Name = name
	return Kube.Provider(pf, logger)
}

// runImage builds the meshbench image (see Kube.Image).
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
	if Kube == nil {
		return execKube(append([]string{"image"}, args...))
	}
	return Kube.Image(ctx, *ref, *out, stdout)
}

// LeanBinary returns the binary the pods should run: meshbench next to the
// running executable (meshbench-kube's sibling), else the running one.
func LeanBinary() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	if p := filepath.Join(filepath.Dir(self), "meshbench"); p != self {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return self, nil
}
