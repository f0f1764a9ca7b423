package kubeenv

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const crashHelperEnv = "KUBEENV_CRASH_HELPER_RUN"

// TestNodeCrashDown kills (SIGKILL) a process that runs a control plane and
// a node with a pod, then checks that the parent-death signal took its
// processes, that Down removes the rest (shims and containers, cgroups,
// namespaces, directory, sysctls) and that the host is as before.
func TestNodeCrashDown(t *testing.T) {
	privileged(t, "containerd", "ctr", "runc", "nsenter", "unshare", "iptables-save")
	binaries(t) // built before the helper needs them
	runID := fmt.Sprintf("%08x", uint32(time.Now().UnixNano()))
	runIDsMu.Lock()
	runIDs = append(runIDs, runID)
	runIDsMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	before, err := SnapshotHost(ctx, runID)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashHelper$", "-test.v")
	cmd.Env = append(os.Environ(), crashHelperEnv+"="+runID)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	ready := false
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if strings.Contains(sc.Text(), "CRASH-HELPER-READY") {
			ready = true
			break
		}
	}
	if !ready {
		cmd.Wait()
		t.Fatalf("helper did not get ready:\n%s", strings.Join(lines, "\n"))
	}
	cmd.Process.Signal(syscall.SIGKILL)
	go func() {
		for sc.Scan() {
		}
	}()
	cmd.Wait()
	time.Sleep(500 * time.Millisecond)
	removed, err := Down(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Down removed %v", removed)
	after, err := SnapshotHost(ctx, runID)
	if err != nil {
		t.Fatal(err)
	}
	if d := before.Diff(after); len(d) > 0 {
		t.Errorf("the host differs after crash and Down:\n%s", strings.Join(d, "\n"))
	}
}

// TestCrashHelper runs only as TestNodeCrashDown's child: it starts an
// environment with a node and a running pod, says so, and waits to be
// killed.
func TestCrashHelper(t *testing.T) {
	runID := os.Getenv(crashHelperEnv)
	if runID == "" {
		t.Skip("helper of TestNodeCrashDown")
	}
	ctx := context.Background()
	cp, err := StartControlPlane(ctx, Options{RunID: runID})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cp.AddNode(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = cp.Client().CoreV1().Pods("default").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "sleeper"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "pause", Image: PauseImage, ImagePullPolicy: corev1.PullNever,
		}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		p, err := cp.Client().CoreV1().Pods("default").Get(ctx, "sleeper", metav1.GetOptions{})
		if err == nil && p.Status.Phase == corev1.PodRunning {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Println("CRASH-HELPER-READY")
	select {}
}
