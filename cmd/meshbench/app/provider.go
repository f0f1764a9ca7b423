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
	ImagePull  string
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
	Provider(f ProviderFlags, logger *slog.Logger) (testbed.Provider, error)
	Diagnose(ctx context.Context, kubeconfig, kubeContext string) ([]string, error)
	Image(ctx context.Context, ref, out string, stdout io.Writer) error
}

// KubeBinary is the binary with the Kubernetes side, next to meshbench.
const KubeBinary = "meshbench-kube"

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
			return fmt.Errorf("%s needs %s, which carries the Kubernetes client, and it is neither next to %s nor on PATH: 'make build' builds both", strings.Join(args[:1], " ")+" --provider kube", KubeBinary, self)
		}
		path = p
	}
	return syscall.Exec(path, append([]string{path}, args...), os.Environ())
}

func (f *providerFlags) register(fs *flag.FlagSet, withImage bool) {
	fs.StringVar(&f.Name, "provider", "", "cluster provider: "+strings.Join(scenarios.KnownProviders, " or ")+" (default: the scenario's, else netns)")
	fs.StringVar(&f.Kubeconfig, "kubeconfig", "", "kube: kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
	fs.StringVar(&f.Context, "context", "", "kube: kubeconfig context (default: the current one)")
	if withImage {
		fs.StringVar(&f.Image, "image", "", "kube: the meshbench image the cluster runs, with a static meshbench at /meshbench ('meshbench image' builds one)")
		fs.StringVar(&f.ImagePull, "image-pull", "IfNotPresent", "kube: the pods' image pull policy: IfNotPresent, Always, or Never for an image loaded into the nodes")
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
	if name != "kube" {
		for flagName, v := range map[string]string{"kubeconfig": f.Kubeconfig, "context": f.Context, "image": f.Image} {
			if v != "" {
				return "", fmt.Errorf("%w: --%s applies to --provider kube only", ErrUsage, flagName)
			}
		}
		return name, nil
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
	if name != "kube" {
		if os.Geteuid() != 0 {
			return nil, errors.New("the netns provider needs root to create network namespaces, cgroups and BPF programs: run it with sudo")
		}
		return netns.New(netns.Options{Logger: logger}), nil
	}
	if Kube == nil {
		return nil, errors.New("the Kubernetes side is not in this binary (use meshbench-kube)")
	}
	return Kube.Provider(*f, logger)
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
