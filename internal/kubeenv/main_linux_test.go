package kubeenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var (
	runIDsMu sync.Mutex
	runIDs   []string
)

// TestMain fails the package if any environment a test started left a
// process, mount, network namespace, cgroup or run directory behind.
func TestMain(m *testing.M) {
	// Remove what environments of crashed test processes left behind.
	if os.Geteuid() == 0 {
		if removed, err := Down(context.Background(), ""); err != nil || len(removed) > 0 {
			fmt.Fprintf(os.Stderr, "kubeenv: removed leftovers of crashed runs: %v (%v)\n", removed, err)
		}
	}
	code := m.Run()
	if leaks := leftovers(); len(leaks) > 0 {
		fmt.Fprintln(os.Stderr, "kubeenv: left behind:")
		for _, l := range leaks {
			fmt.Fprintln(os.Stderr, "  "+l)
		}
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// leftovers lists the objects of this process's runs still on the host,
// and any process named like one the environment runs.
func leftovers() []string {
	runIDsMu.Lock()
	ids := append([]string(nil), runIDs...)
	runIDsMu.Unlock()
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil {
			continue
		}
		if comm := strings.TrimSpace(string(b)); envProcName.MatchString(comm) {
			out = append(out, fmt.Sprintf("process %s %s", e.Name(), comm))
		}
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		if strings.Contains(l, "kubelet") || strings.Contains(l, "containerd") || strings.Contains(l, "meshbench-kube") {
			out = append(out, "mount "+l)
		}
	}
	cg, err := detectCgroups()
	if err != nil {
		out = append(out, err.Error())
	}
	for _, id := range ids {
		for _, p := range mustGlob(filepath.Join(netnsDir, "mb-"+id+"-*")) {
			out = append(out, "netns "+p)
		}
		if cg != nil {
			for _, d := range cg.dirs(CgroupTop(id)) {
				out = append(out, "cgroup "+d)
			}
		}
		for _, p := range mustGlob(filepath.Join(os.TempDir(), "meshbench-kube-"+id+"-*")) {
			out = append(out, "directory "+p)
		}
	}
	if cg != nil {
		for _, root := range cg.roots {
			for _, p := range mustGlob(filepath.Join(root, "kubepods*")) {
				out = append(out, "cgroup "+p)
			}
		}
	}
	return out
}

func mustGlob(pattern string) []string {
	m, _ := filepath.Glob(pattern)
	return m
}

// privileged skips the test, saying why, unless it runs as root, and fails
// it when a tool that `make test` installs is missing.
func privileged(t *testing.T, tools ...string) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the Kubernetes environment needs Linux")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a Kubernetes control plane and nodes (run the tests as root)")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s missing: `make test` installs it (ci/install-deps.sh test)", tool)
		}
	}
}

// binaries returns the cached binaries, building them if needed (`make
// kube-bins` does that before the tests).
func binaries(t *testing.T) Binaries {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	start := time.Now()
	bins, skip, err := TestBinaries(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if skip != "" {
		t.Skip(skip)
	}
	if d := time.Since(start); d > time.Second {
		t.Logf("built the Kubernetes binaries in %v", d.Round(time.Second))
	}
	return bins
}

// startControlPlane starts an environment that the test's cleanup stops
// and checks: no process of it survives, its directory is gone.
func startControlPlane(t *testing.T, opts Options) *ControlPlane {
	t.Helper()
	if opts.RunID == "" {
		opts.RunID = fmt.Sprintf("%08x", uint32(time.Now().UnixNano()))
	}
	runIDsMu.Lock()
	runIDs = append(runIDs, opts.RunID)
	runIDsMu.Unlock()
	if opts.Binaries == nil {
		opts.Binaries = binaries(t)
	}
	opts.Log = testLogger(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	cp, err := StartControlPlane(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("control plane up in %v", time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() { stopAndCheck(t, cp) })
	return cp
}

func stopAndCheck(t *testing.T, cp *ControlPlane) {
	t.Helper()
	if t.Failed() {
		dumpState(t, cp)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cp.Stop(ctx); err != nil {
		t.Error(err)
	}
	t.Logf("teardown in %v", time.Since(start).Round(time.Millisecond))
	for _, p := range cp.procs {
		if !p.exited() {
			t.Errorf("%s (pid %d) still runs after Stop", p.name, p.cmd.Process.Pid)
		}
	}
	if _, err := os.Stat(cp.Dir()); err == nil {
		t.Errorf("run directory %s still exists after Stop", cp.Dir())
	}
	if d := cp.cg.dirs(CgroupTop(cp.RunID())); len(d) > 0 {
		t.Errorf("cgroups left after Stop: %v", d)
	}
}

// dumpState logs the pods, events and the end of every process's log, for
// a failed test.
func dumpState(t *testing.T, cp *ControlPlane) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if pods, err := cp.Client().CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err == nil {
		for _, p := range pods.Items {
			t.Logf("pod %s/%s on %q: %s %+v", p.Namespace, p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.Conditions)
		}
	}
	if evs, err := cp.Client().CoreV1().Events("").List(ctx, metav1.ListOptions{}); err == nil {
		for _, e := range evs.Items {
			t.Logf("event %s %s: %s %s", e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message)
		}
	}
	procs := append([]*proc(nil), cp.procs...)
	for _, n := range cp.Nodes() {
		procs = append(procs, n.containerd, n.kubelet, n.kubeProxy)
	}
	for _, p := range procs {
		if p == nil {
			continue
		}
		state := "running"
		if p.exited() {
			state = fmt.Sprintf("exited: %v", p.err)
		} else if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid)); err == nil {
			state = "running, stat: " + string(b)
		}
		t.Logf("process %s (pid %d): %s", p.name, p.cmd.Process.Pid, state)
	}
	logs, _ := filepath.Glob(filepath.Join(cp.Dir(), "*", "*.log"))
	more, _ := filepath.Glob(filepath.Join(cp.Dir(), "*", "logs", "*.log"))
	for _, l := range append(logs, more...) {
		b, _ := os.ReadFile(l)
		t.Logf("--- %s:\n%s", l, tail(string(b)))
	}
}
