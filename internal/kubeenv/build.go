package kubeenv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// Versions of the software the environment builds. They are pinned: the Go
// module proxy refuses @latest for some of these modules.
const (
	KubernetesVersion = "v1.37.2" // k8s.io/kubernetes
	StagingVersion    = "v0.37.2" // k8s.io/* staging modules matching KubernetesVersion
	EtcdVersion       = "v3.7.3"  // go.etcd.io/etcd/server/v3
	KwokVersion       = "v0.8.0"  // sigs.k8s.io/kwok
)

// Binary names the cache holds.
const (
	Etcd                  = "etcd"
	KubeAPIServer         = "kube-apiserver"
	KubeControllerManager = "kube-controller-manager"
	KubeScheduler         = "kube-scheduler"
	Kubelet               = "kubelet"
	KubeProxy             = "kube-proxy"
	Kwok                  = "kwok"
	// Pause is a static program that sleeps until SIGTERM: the nodes'
	// sandbox image (PauseImage).
	Pause = "pause"
	// KwokStages is kwok's stage configuration (its "fast" node and pod
	// stages, taken from the kwok module).
	KwokStages = "kwok-stages.yaml"
)

// kubeBinaries are built from k8s.io/kubernetes/cmd/<name>.
var kubeBinaries = []string{KubeAPIServer, KubeControllerManager, KubeScheduler, Kubelet, KubeProxy}

// AllBinaries lists every file EnsureBinaries provides.
var AllBinaries = append([]string{Etcd, Kwok, KwokStages, Pause}, kubeBinaries...)

// CacheRoot returns the directory that holds meshbench's build caches:
// $MESHBENCH_CACHE, or /var/cache/meshbench.
func CacheRoot() string {
	if d := os.Getenv("MESHBENCH_CACHE"); d != "" {
		return d
	}
	return "/var/cache/meshbench"
}

// versionKey names one combination of versions in the cache.
func versionKey() string {
	return fmt.Sprintf("k8s-%s_etcd-%s_kwok-%s", KubernetesVersion, EtcdVersion, KwokVersion)
}

// BinDir returns where the binaries of the pinned versions are (or will be)
// cached: CacheRoot()/kube/<versions>/bin.
func BinDir() string {
	return filepath.Join(CacheRoot(), "kube", versionKey(), "bin")
}

// Binaries maps each binary's name to its path.
type Binaries map[string]string

// Path returns the path of the named binary.
func (b Binaries) Path(name string) string { return b[name] }

// CachedBinaries returns the cached binaries if every one of them is present,
// and ok=false otherwise. It builds nothing.
func CachedBinaries() (Binaries, bool) {
	dir := BinDir()
	bins := Binaries{}
	for _, name := range AllBinaries {
		p := filepath.Join(dir, name)
		st, err := os.Stat(p)
		if err != nil || !st.Mode().IsRegular() || (name != KwokStages && st.Mode().Perm()&0o111 == 0) {
			return nil, false
		}
		bins[name] = p
	}
	return bins, true
}

// EnsureBinaries returns the paths of etcd, kwok and the Kubernetes binaries
// of the pinned versions, building the missing ones into BinDir() first.
// When they are all there it returns at once and runs no go command.
// Building needs the go command and the Go module proxy; it takes minutes on
// a cold Go cache (progress is logged at Info every 30 s) and seconds on a
// warm one. Concurrent callers, in this or other processes, wait for one
// build.
func EnsureBinaries(ctx context.Context, log *slog.Logger) (Binaries, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if bins, ok := CachedBinaries(); ok {
		return bins, nil
	}
	root := filepath.Dir(BinDir())
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("kube binaries: create cache: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(root, "lock"))
	if err != nil {
		return nil, fmt.Errorf("kube binaries: %w", err)
	}
	defer unlock()
	if bins, ok := CachedBinaries(); ok { // another process built them meanwhile
		return bins, nil
	}
	start := time.Now()
	tmp := BinDir() + ".tmp"
	// Keep what a previous, interrupted or older build finished.
	if _, err := os.Stat(tmp); err != nil {
		if err := os.Rename(BinDir(), tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("kube binaries: %w", err)
		}
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("kube binaries: %w", err)
	}
	b := &builder{root: root, out: tmp, log: log}
	steps := []struct {
		names []string
		build func(context.Context) error
	}{
		{[]string{Etcd}, b.buildEtcd},
		{[]string{Kwok}, b.buildKwok},
		{[]string{KwokStages}, b.kwokStages},
		{[]string{Pause}, b.buildPause},
		{kubeBinaries, b.buildKubernetes},
	}
	for _, s := range steps {
		if b.have(s.names...) {
			continue
		}
		if err := s.build(ctx); err != nil {
			return nil, fmt.Errorf("kube binaries: %w", err)
		}
	}
	if err := os.Rename(tmp, BinDir()); err != nil {
		return nil, fmt.Errorf("kube binaries: %w", err)
	}
	bins, ok := CachedBinaries()
	if !ok {
		return nil, errors.New("kube binaries: built, but some are missing from the cache")
	}
	log.Info("kube binaries built", "dir", BinDir(), "took", time.Since(start).Round(time.Second))
	return bins, nil
}

// lockFile takes an exclusive flock on path, waiting for ctx.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock build cache: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock build cache: %w", err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock build cache: %w", ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

type builder struct {
	root string // CacheRoot()/kube/<versions>
	out  string // where binaries go
	log  *slog.Logger
}

func (b *builder) have(names ...string) bool {
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(b.out, n)); err != nil {
			return false
		}
	}
	return true
}

// scratch writes a throw-away module under root/src/<name> holding files.
func (b *builder) scratch(name string, files map[string]string) (string, error) {
	dir := filepath.Join(b.root, "src", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("scratch module %s: %w", name, err)
	}
	for f, content := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(content), 0o644); err != nil {
			return "", fmt.Errorf("scratch module %s: %w", name, err)
		}
	}
	return dir, nil
}

func (b *builder) buildEtcd(ctx context.Context) error {
	dir, err := b.scratch("etcd", map[string]string{
		"go.mod":  "module meshbench.local/etcd\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 " + EtcdVersion + "\n",
		"main.go": "// Command etcd runs etcd's server.\npackage main\n\nimport (\n\t\"os\"\n\n\t\"go.etcd.io/etcd/server/v3/etcdmain\"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n",
	})
	if err != nil {
		return err
	}
	if err := b.goCmd(ctx, "etcd: resolve modules", dir, "mod", "tidy"); err != nil {
		return err
	}
	return b.goCmd(ctx, "etcd: build", dir, "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(b.out, Etcd), ".")
}

func (b *builder) buildKwok(ctx context.Context) error {
	dir, err := b.scratch("kwok", map[string]string{})
	if err != nil {
		return err
	}
	// kwok's go.mod has no replace directives, so go install pkg@version works.
	return b.goCmdEnv(ctx, "kwok: build", dir, []string{"GOBIN=" + b.out},
		"install", "-trimpath", "-ldflags=-s -w", "sigs.k8s.io/kwok/cmd/kwok@"+KwokVersion)
}

// kwokStageFiles are kwok's "fast" stages: nodes become Ready and pods
// Running at once, and deleted pods go.
var kwokStageFiles = []string{
	"kustomize/stage/node/fast/node-initialize.yaml",
	"kustomize/stage/pod/fast/pod-ready.yaml",
	"kustomize/stage/pod/fast/pod-complete.yaml",
	"kustomize/stage/pod/fast/pod-delete.yaml",
}

// kwokStages joins kwok's stage files, read from its module, into one
// configuration file.
func (b *builder) kwokStages(ctx context.Context) error {
	dir, err := b.scratch("kwok", map[string]string{})
	if err != nil {
		return err
	}
	modDir, _, err := downloadModule(ctx, dir, "sigs.k8s.io/kwok@"+KwokVersion)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	for i, f := range kwokStageFiles {
		c, err := os.ReadFile(filepath.Join(modDir, f))
		if err != nil {
			return fmt.Errorf("kwok stages: %w", err)
		}
		if i > 0 {
			out.WriteString("---\n")
		}
		out.Write(c)
	}
	if err := os.WriteFile(filepath.Join(b.out, KwokStages), out.Bytes(), 0o644); err != nil {
		return fmt.Errorf("kwok stages: %w", err)
	}
	return nil
}

const pauseSource = `// Command pause holds a pod's namespaces: it sleeps until SIGTERM or SIGINT.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
`

func (b *builder) buildPause(ctx context.Context) error {
	dir, err := b.scratch("pause", map[string]string{
		"go.mod":  "module meshbench.local/pause\n\ngo 1.26\n",
		"main.go": pauseSource,
	})
	if err != nil {
		return err
	}
	return b.goCmd(ctx, "pause: build", dir, "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(b.out, Pause), ".")
}

// downloadModule downloads mod (path@version) and returns its directory and
// go.mod file.
func downloadModule(ctx context.Context, dir, mod string) (modDir, goMod string, err error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", mod)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return "", "", fmt.Errorf("download %s: %w: %s", mod, err, tail(out.String()))
	}
	var info struct{ Dir, GoMod string }
	if err := json.Unmarshal(out.Bytes(), &info); err != nil || info.Dir == "" || info.GoMod == "" {
		return "", "", fmt.Errorf("download %s: unexpected answer %q", mod, tail(out.String()))
	}
	return info.Dir, info.GoMod, nil
}

var stagingReplace = regexp.MustCompile(`^\s*(k8s\.io/[A-Za-z0-9._-]+)\s+=>\s+\./staging/`)

// kubeStagingModules reads k8s.io/kubernetes' go.mod and returns the modules
// it replaces with its staging directories.
func (b *builder) kubeStagingModules(ctx context.Context, dir string) ([]string, error) {
	_, goMod, err := downloadModule(ctx, dir, "k8s.io/kubernetes@"+KubernetesVersion)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(goMod)
	if err != nil {
		return nil, fmt.Errorf("read kubernetes go.mod: %w", err)
	}
	defer f.Close()
	var mods []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := stagingReplace.FindStringSubmatch(sc.Text()); m != nil {
			mods = append(mods, m[1])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read kubernetes go.mod: %w", err)
	}
	if len(mods) == 0 {
		return nil, errors.New("read kubernetes go.mod: no staging replacements found")
	}
	return mods, nil
}

func (b *builder) buildKubernetes(ctx context.Context) error {
	dir, err := b.scratch("kubernetes", map[string]string{
		"go.mod": "module meshbench.local/kubernetes\n\ngo 1.26\n",
	})
	if err != nil {
		return err
	}
	mods, err := b.kubeStagingModules(ctx, dir)
	if err != nil {
		return err
	}
	var gomod, tools strings.Builder
	fmt.Fprintf(&gomod, "module meshbench.local/kubernetes\n\ngo 1.26\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n", KubernetesVersion)
	for _, m := range mods {
		fmt.Fprintf(&gomod, "\t%s => %s %s\n", m, m, StagingVersion)
	}
	gomod.WriteString(")\n")
	tools.WriteString("//go:build tools\n\n// Package tools pins the Kubernetes commands this module builds.\npackage tools\n\nimport (\n")
	for _, n := range kubeBinaries {
		fmt.Fprintf(&tools, "\t_ \"k8s.io/kubernetes/cmd/%s\"\n", n)
	}
	tools.WriteString(")\n")
	if _, err := b.scratch("kubernetes", map[string]string{"go.mod": gomod.String(), "tools.go": tools.String()}); err != nil {
		return err
	}
	if err := b.goCmd(ctx, "kubernetes: resolve modules", dir, "mod", "tidy"); err != nil {
		return err
	}
	var ld []string
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		ld = append(ld,
			"-X "+pkg+".gitVersion="+KubernetesVersion,
			"-X "+pkg+".gitMajor=1",
			"-X "+pkg+".gitMinor="+strings.Split(KubernetesVersion, ".")[1],
			"-X "+pkg+".gitTreeState=clean")
	}
	for _, n := range kubeBinaries {
		if b.have(n) {
			continue
		}
		if err := b.goCmd(ctx, "kubernetes: build "+n, dir, "build", "-trimpath",
			"-ldflags=-s -w "+strings.Join(ld, " "), "-o", filepath.Join(b.out, n), "k8s.io/kubernetes/cmd/"+n); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) goCmd(ctx context.Context, what, dir string, args ...string) error {
	return b.goCmdEnv(ctx, what, dir, nil, args...)
}

// goCmdEnv runs the go command in dir, statically linked for Linux, logging
// progress every 30 s.
func (b *builder) goCmdEnv(ctx context.Context, what, dir string, env []string, args ...string) error {
	start := time.Now()
	b.log.Info("kube binaries: "+what, "step", "start")
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=-mod=mod", "GOWORK=off")
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("%s: go %s: %w: %s", what, strings.Join(args, " "), err, tail(out.String()))
			}
			b.log.Info("kube binaries: "+what, "step", "done", "took", time.Since(start).Round(time.Second))
			return nil
		case <-tick.C:
			b.log.Info("kube binaries: "+what, "step", "running", "elapsed", time.Since(start).Round(time.Second))
		}
	}
}

// tail returns the last lines of s, for error messages.
func tail(s string) string {
	s = strings.TrimSpace(s)
	lines := strings.Split(s, "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

// BuildEnv, set to 1, lets TestBinaries build missing binaries.
const BuildEnv = "MESHBENCH_KUBE_BUILD"

// TestBinaries returns the binaries for a test. When they are not cached it
// builds them only if $MESHBENCH_KUBE_BUILD is 1, and otherwise returns why
// the test should skip: a cold build takes about 16 minutes here, more than
// `make test` may spend, so `make kube-bins` (which .ci/run runs before `make
// test`) builds them as a step of its own.
func TestBinaries(ctx context.Context, log *slog.Logger) (bins Binaries, skip string, err error) {
	if bins, ok := CachedBinaries(); ok {
		return bins, "", nil
	}
	if os.Getenv(BuildEnv) != "1" {
		return nil, fmt.Sprintf("the Kubernetes binaries are not built in %s: run `make kube-bins` (about 16 min cold; .ci/run does), or set %s=1", BinDir(), BuildEnv), nil
	}
	bins, err = EnsureBinaries(ctx, log)
	return bins, "", err
}
