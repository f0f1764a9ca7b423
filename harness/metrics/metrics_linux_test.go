package metrics

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshbench/meshbench/internal/nsutil"
)

// burnCPU spins until the process's utime+stime has grown by at least two
// clock ticks (bounded by 5 s of wall time).
func burnCPU(t *testing.T) {
	t.Helper()
	start, err := ReadProcess(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	x := 0
	for time.Now().Before(deadline) {
		for i := range 1_000_000 {
			x += i * i
		}
		p, err := ReadProcess(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if p.CPUSeconds-start.CPUSeconds >= 2.0/ClockTicks {
			return
		}
	}
	t.Fatalf("5 s of spinning did not move utime+stime (x=%d)", x)
}

func TestReadProcessSelf(t *testing.T) {
	burnCPU(t)
	// The leader's counts, read first: they only grow, so the sum over
	// threads read after them can be no smaller (read the other way round,
	// a switch in between once made the leader exceed the sum).
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	p, err := ReadProcess(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if p.PID != os.Getpid() || p.Comm == "" || p.StartTicks == 0 {
		t.Errorf("identity: %+v", p)
	}
	if p.CPUSeconds <= 0 || p.CPUNanos <= 0 {
		t.Errorf("CPUSeconds = %v, CPUNanos = %d, want > 0", p.CPUSeconds, p.CPUNanos)
	}
	if p.RSSBytes <= 0 || p.PSSBytes <= 0 || p.PSSBytes > p.RSSBytes {
		t.Errorf("RSS = %d, PSS = %d, want 0 < PSS <= RSS", p.RSSBytes, p.PSSBytes)
	}
	if p.Threads < 1 || len(p.Tasks) < 1 {
		t.Errorf("Threads = %d, %d tasks read", p.Threads, len(p.Tasks))
	}
	if p.ContextSwitches() <= 0 {
		t.Errorf("ContextSwitches = %d, want > 0", p.ContextSwitches())
	}
	// The leader's own counts (what /proc/PID/status shows) are part of the
	// sum over threads, never more than it.
	v, n, err := parseStatus(b)
	if err != nil {
		t.Fatal(err)
	}
	if v > p.VoluntaryCtxt || n > p.NonvoluntaryCtxt {
		t.Errorf("leader %d/%d exceeds the thread sum %d/%d", v, n, p.VoluntaryCtxt, p.NonvoluntaryCtxt)
	}
}

// TestReadProcessCountsThreads checks that switches of threads other than the
// leader are counted: locked threads that sleep repeatedly switch
// voluntarily on threads other than the main one.
func TestReadProcessCountsThreads(t *testing.T) {
	before, err := ReadProcess(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	leader0 := leaderSwitches(t)
	done := make(chan struct{})
	release := make(chan struct{})
	const workers, sleeps = 4, 200
	for range workers {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			for range sleeps {
				time.Sleep(50 * time.Microsecond)
			}
			done <- struct{}{}
			<-release
		}()
	}
	for range workers {
		<-done
	}
	after, err := ReadProcess(os.Getpid())
	leader1 := leaderSwitches(t)
	close(release)
	if err != nil {
		t.Fatal(err)
	}
	d := diffProc(before, after)
	t.Logf("voluntary switches: %d summed over threads, %d in /proc/self/status (leader only)", d.VoluntaryCtxt, leader1-leader0)
	if d.VoluntaryCtxt < workers*sleeps/2 {
		t.Errorf("voluntary switches grew by %d, want at least %d from %d sleeping threads", d.VoluntaryCtxt, workers*sleeps/2, workers)
	}
}

func leaderSwitches(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	v, _, err := parseStatus(b)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestReadProcessGone(t *testing.T) {
	t.Run("exited", func(t *testing.T) {
		cmd := exec.Command("true")
		if err := cmd.Run(); err != nil {
			t.Skipf("cannot run true: %v", err)
		}
		_, err := ReadProcess(cmd.Process.Pid)
		if !errors.Is(err, ErrProcessGone) {
			t.Errorf("err = %v, want ErrProcessGone", err)
		}
	})
	t.Run("zombie", func(t *testing.T) {
		cmd := exec.Command("true")
		if err := cmd.Start(); err != nil {
			t.Skipf("cannot run true: %v", err)
		}
		defer cmd.Wait()
		pid := cmd.Process.Pid
		deadline := time.Now().Add(5 * time.Second)
		for !isZombie(pid) {
			if time.Now().After(deadline) {
				t.Fatal("child did not become a zombie in 5 s")
			}
			time.Sleep(5 * time.Millisecond)
		}
		_, err := ReadProcess(pid)
		if !errors.Is(err, ErrProcessGone) {
			t.Errorf("err = %v, want ErrProcessGone", err)
		}
	})
}

func isZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	st, err := parseStat(b)
	return err == nil && st.state == 'Z'
}

func TestTakeSnapshotAndDiff(t *testing.T) {
	exited := exec.Command("true")
	if err := exited.Run(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	ctx := context.Background()
	pids := []int{os.Getpid(), exited.Process.Pid}
	before, err := TakeSnapshot(ctx, pids, []string{""})
	if err != nil {
		t.Fatal(err)
	}
	if len(before.Gone) != 1 || before.Gone[0] != exited.Process.Pid {
		t.Errorf("Gone = %v, want [%d]", before.Gone, exited.Process.Pid)
	}
	burnCPU(t)
	after, err := TakeSnapshot(ctx, pids, []string{""})
	if err != nil {
		t.Fatal(err)
	}
	d := Diff(before, after)
	self, ok := d.Procs[os.Getpid()]
	if !ok {
		t.Fatalf("own process missing from the delta: %+v", d)
	}
	if self.CPUSeconds <= 0 || self.CPUNanos <= 0 {
		t.Errorf("CPU delta %v s, %d ns, want > 0", self.CPUSeconds, self.CPUNanos)
	}
	if d.Interval <= 0 || d.Namespaces != 1 {
		t.Errorf("Interval %v, Namespaces %d", d.Interval, d.Namespaces)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := TakeSnapshot(cctx, pids, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled snapshot: err = %v", err)
	}
	if _, err := TakeSnapshot(ctx, nil, []string{"/nonexistent/netns"}); err == nil {
		t.Error("snapshot of a missing netns succeeded")
	}
}

func TestReadCgroupMemoryFixtures(t *testing.T) {
	tests := []struct {
		dir     string
		want    CgroupMemory
		wantErr error
	}{
		{dir: "cgroup-v1", want: CgroupMemory{Version: 1, UsageBytes: 152174592, AnonBytes: 2170880, FileBytes: 143523840}},
		{dir: "cgroup-v2", want: CgroupMemory{Version: 2, UsageBytes: 17825792, AnonBytes: 4325376, FileBytes: 12288000}},
		{dir: "cgroup-none", wantErr: ErrNotSupported},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			got, err := ReadCgroupMemory(filepath.Join("testdata", tt.dir))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want && tt.wantErr == nil {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	if _, err := ReadCgroupMemory(""); !errors.Is(err, ErrNotSupported) {
		t.Errorf("empty path: err = %v, want ErrNotSupported", err)
	}
}

// TestReadCgroupMemoryOwn reads the memory cgroup this test runs in, on
// whichever hierarchy has the memory controller.
func TestReadCgroupMemoryOwn(t *testing.T) {
	dir, err := ownMemoryCgroup()
	if err != nil {
		t.Skipf("no memory cgroup for this process: %v", err)
	}
	m, err := ReadCgroupMemory(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.UsageBytes <= 0 || m.Version == 0 {
		t.Errorf("%s: %+v, want usage > 0", dir, m)
	}
}

// ownMemoryCgroup finds this process's memory cgroup directory: the v1
// memory controller's when mounted, else the v2 one.
func ownMemoryCgroup() (string, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	defer f.Close()
	var v1, v2 string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[1] == "":
			v2 = parts[2]
		case strings.Contains(","+parts[1]+",", ",memory,"):
			v1 = parts[2]
		}
	}
	for _, c := range []string{filepath.Join("/sys/fs/cgroup/memory", v1), filepath.Join("/sys/fs/cgroup", v2), filepath.Join("/sys/fs/cgroup/unified", v2)} {
		for _, f := range []string{"memory.usage_in_bytes", "memory.current"} {
			if _, err := os.Stat(filepath.Join(c, f)); err == nil {
				return c, nil
			}
		}
	}
	return "", errors.New("no memory accounting found")
}

// newNetns creates a throwaway named network namespace with loopback up and
// removes it when the test ends.
func newNetns(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (Debian package iproute2)")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "mbt-metrics-" + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("set lo up in %s: %v: %s", name, err, out)
	}
	return "/run/netns/" + name
}

func TestReadSNMPNetns(t *testing.T) {
	ns := newNetns(t)
	before, err := ReadSNMP(ns)
	if err != nil {
		t.Fatal(err)
	}
	// A fresh namespace has seen no TCP at all: this proves the counters are
	// the namespace's, not the root namespace's.
	if before.Segments() != 0 {
		t.Fatalf("fresh netns already counts %d segments: read the wrong namespace?", before.Segments())
	}

	ln, err := nsutil.Listen(ns, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := nsutil.Dial(ctx, ns, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	const messages = 100
	buf := make([]byte, 16)
	for i := range messages {
		msg := fmt.Appendf(nil, "message %07d", i)[:16]
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
	}
	after, err := ReadSNMP(ns)
	if err != nil {
		t.Fatal(err)
	}
	d := after.Sub(before)
	t.Logf("netns delta after %d echoed messages: %+v", messages, d)
	// Each message and each echo is at least one segment, sent and received
	// within the namespace.
	if d.InSegs < messages*2 || d.OutSegs < messages*2 {
		t.Errorf("delta %+v, want InSegs and OutSegs >= %d", d, messages*2)
	}
	if d.ActiveOpens != 1 || d.PassiveOpens != 1 {
		t.Errorf("opens: active %d passive %d, want 1 and 1", d.ActiveOpens, d.PassiveOpens)
	}

	sum, err := SumSNMP([]string{ns, ns})
	if err != nil {
		t.Fatal(err)
	}
	if sum.InSegs < 2*after.InSegs {
		t.Errorf("SumSNMP of the namespace twice: InSegs %d, want >= %d", sum.InSegs, 2*after.InSegs)
	}
	if _, err := SumSNMP([]string{ns, "/nonexistent"}); err == nil {
		t.Error("SumSNMP with a missing namespace succeeded")
	}
}

func TestReadSNMPOwn(t *testing.T) {
	tcp, err := ReadSNMP("")
	if err != nil {
		t.Fatal(err)
	}
	if tcp.InSegs < 0 || tcp.OutSegs < 0 {
		t.Errorf("own namespace: %+v", tcp)
	}
}
