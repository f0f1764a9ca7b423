package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed/netns"
	"github.com/meshbench/meshbench/harness/testbed/testutil"
)

var binary string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "meshbench-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "meshbench")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build meshbench: %v\n%s", err, out)
		return 1
	}
	return testutil.TestMainLeakCheck(m)
}

const longScenario = `
topology: {nodes: 2, pods_per_node: 2}
load: {rates: [200], duration: 30s, warmup: 1s}
`

// startBench starts `meshbench bench` and returns once the load is running.
func startBench(t *testing.T, runID, scenario, out string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.yaml")
	if err := os.WriteFile(path, []byte(scenario), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "bench", path, "--out", out, "--run-id", runID)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	loading := make(chan struct{})
	var log bytes.Buffer
	go func() {
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if !once && strings.HasPrefix(sc.Text(), "[1/1]") {
				once = true
				close(loading)
			}
		}
	}()
	select {
	case <-loading:
	case <-time.After(60 * time.Second):
		t.Fatalf("load never started; stderr:\n%s", log.String())
	}
	// Let warm-up pass so the step has something measured.
	time.Sleep(3 * time.Second)
	return cmd, &stdout
}

func waitExit(t *testing.T, cmd *exec.Cmd, limit time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		t.Fatalf("meshbench did not exit within %s", limit)
		return nil
	}
}

func TestBenchSIGINT(t *testing.T) {
	testutil.Privileged(t)
	runID := testutil.NewRunID(t)
	out := t.TempDir()
	cmd, stdout := startBench(t, runID, longScenario, out)
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := waitExit(t, cmd, 30*time.Second)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("exit: %v, want status 1", err)
	}
	run, rerr := results.ReadFile(filepath.Join(out, "results.json"))
	if rerr != nil {
		t.Fatal(rerr)
	}
	if run.Status != results.StatusInterrupted || len(run.Steps) != 1 || run.Steps[0].Successes == 0 {
		t.Errorf("results: status %q with %d steps; want interrupted with the measured step", run.Status, len(run.Steps))
	}
	if !strings.Contains(stdout.String(), "report.html") {
		t.Errorf("report path not printed; stdout %q", stdout.String())
	}
	if _, err := os.Stat(filepath.Join(out, "report.html")); err != nil {
		t.Errorf("no report after SIGINT: %v", err)
	}
	// NewRunID's cleanup asserts nothing of the run is left.
}

func TestDownAfterSIGKILL(t *testing.T) {
	testutil.Privileged(t)
	runID := testutil.NewRunID(t)
	cmd, _ := startBench(t, runID, longScenario, t.TempDir())
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = waitExit(t, cmd, 10*time.Second)
	left, err := netns.Leftovers(runID)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) == 0 {
		t.Fatal("a SIGKILLed run left nothing behind: the test did not exercise down")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	down := exec.CommandContext(ctx, binary, "down", "--run", runID)
	outb, err := down.CombinedOutput()
	if err != nil {
		t.Fatalf("down: %v\n%s", err, outb)
	}
	if !strings.Contains(string(outb), "removed") {
		t.Errorf("down output %q", outb)
	}
}

func TestBenchQuick(t *testing.T) {
	testutil.Privileged(t)
	runID := testutil.NewRunID(t)
	out := t.TempDir()
	cmd := exec.Command(binary, "bench", "../../scenarios/quick.yaml", "--out", out, "--run-id", runID)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr.String())
	}
	html := strings.TrimSpace(stdout.String())
	if html != filepath.Join(out, "report.html") {
		t.Errorf("printed %q, want the report path", html)
	}
	run, err := results.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if run.Status != results.StatusOK || len(run.Steps) != 5 {
		t.Fatalf("status %q (%s), %d steps; want ok with one step per datapath", run.Status, run.Error, len(run.Steps))
	}
	for _, s := range run.Steps {
		if !s.Proof.Verified {
			t.Errorf("%s: proof not verified: %s", s.Datapath, s.Proof.Detail)
		}
	}
	for _, want := range []string{"creating cluster", "[1/5] none", "[5/5] afxdp", "req/s"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("progress output lacks %q:\n%s", want, stderr.String())
		}
	}
	_ = io.Discard
}
