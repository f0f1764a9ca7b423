package metrics

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary act as a process of a test's tree
// instead of running the tests (see TestMain).
const helperEnv = "MESHBENCH_METRICS_HELPER"

// Sizes of the helper child's work.
const (
	childBytes    = 32 << 20 // touched at start
	childBurn     = 0.5      // CPU seconds burned at start
	childLastBurn = 0.3      // CPU seconds burned on SIGUSR1, before exiting
)

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "parent":
		helperParent()
	case "child":
		helperChild()
	default:
		os.Exit(m.Run())
	}
}

// helperParent starts a child, says "child PID", waits for it (so its CPU
// time moves into this process's cutime), says "reaped", and lives until
// its stdin closes: a wrapper that runs the real work as its child.
func helperParent() {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=child")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("child", cmd.Process.Pid)
	_ = cmd.Wait()
	fmt.Println("reaped")
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// helperChild touches childBytes, burns childBurn s of CPU and says
// "ready"; on SIGUSR1 it burns childLastBurn s more and exits.
func helperChild() {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	mem := make([]byte, childBytes)
	for i := range mem {
		mem[i] = byte(i)
	}
	burnOwn(childBurn)
	fmt.Println("ready")
	<-usr1
	burnOwn(childLastBurn)
	fmt.Println(mem[len(mem)-1] - mem[len(mem)-1]) // keep mem alive
	os.Exit(0)
}

// burnOwn spins until this process's utime+stime grew by sec.
func burnOwn(sec float64) {
	start := ownCPU()
	x := 0
	for ownCPU()-start < sec {
		for i := range 100_000 {
			x += i * i
		}
	}
	_ = x
}

func ownCPU() float64 {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		panic(err)
	}
	st, err := parseStat(b)
	if err != nil {
		panic(err)
	}
	return float64(st.utime+st.stime) / ClockTicks
}

// tree is a running helperParent with its child.
type tree struct {
	parent, child int
	lines         *bufio.Scanner
}

func startTree(t *testing.T) *tree {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=parent")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tr := &tree{parent: cmd.Process.Pid, lines: bufio.NewScanner(stdout)}
	t.Cleanup(func() {
		if tr.child > 0 {
			_ = syscall.Kill(tr.child, syscall.SIGKILL)
		}
		stdin.Close()
		_ = cmd.Wait()
	})
	if f := tr.expect(t, "child"); len(f) == 2 {
		tr.child, _ = strconv.Atoi(f[1])
	}
	if tr.child <= 0 {
		t.Fatal("helper parent did not start its child")
	}
	tr.expect(t, "ready")
	return tr
}

// expect reads lines until one starting with word, and returns its fields.
func (tr *tree) expect(t *testing.T, word string) []string {
	t.Helper()
	got := make(chan []string, 1)
	go func() {
		for tr.lines.Scan() {
			if f := strings.Fields(tr.lines.Text()); len(f) > 0 && f[0] == word {
				got <- f
				return
			}
		}
		got <- nil
	}()
	select {
	case f := <-got:
		if f == nil {
			t.Fatalf("helper ended before saying %q", word)
		}
		return f
	case <-time.After(30 * time.Second):
		t.Fatalf("helper did not say %q in 30 s", word)
		return nil
	}
}

// TestReadTreeCountsChildren: a wrapper's figures include the child it runs
// (memory, CPU, threads), and a child read on its own is left out.
func TestReadTreeCountsChildren(t *testing.T) {
	tr := startTree(t)
	parent, err := ReadProcess(tr.parent)
	if err != nil {
		t.Fatal(err)
	}
	child, err := ReadProcess(tr.child)
	if err != nil {
		t.Fatal(err)
	}
	all, err := ReadTree(tr.parent, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("parent alone: %.2f s, RSS %d MiB; child: %.2f s, RSS %d MiB; tree: %.2f s, RSS %d MiB, %d threads",
		parent.CPUSeconds, parent.RSSBytes>>20, child.CPUSeconds, child.RSSBytes>>20, all.CPUSeconds, all.RSSBytes>>20, all.Threads)
	// The member is the child, with its own figures (read a moment after
	// ReadProcess's: its memory as large as the pages it touched, its CPU
	// no less).
	if d := all.Descendants; len(d) != 1 || d[0].PID != tr.child || d[0].PPID != tr.parent || d[0].Comm != child.Comm || d[0].StartTicks != child.StartTicks ||
		d[0].RSSBytes < childBytes || d[0].PSSBytes <= 0 || d[0].USSBytes <= 0 || d[0].CPUSeconds < child.CPUSeconds {
		t.Errorf("Descendants = %+v, want the child %d (of %d) with RSS ≥ %d and CPU ≥ %.2f s", d, tr.child, tr.parent, childBytes, child.CPUSeconds)
	}
	if all.PID != tr.parent || all.StartTicks != parent.StartTicks {
		t.Errorf("tree identity %d/%d, want the parent's %d/%d", all.PID, all.StartTicks, tr.parent, parent.StartTicks)
	}
	if all.RSSBytes < childBytes || all.RSSBytes < parent.RSSBytes+child.RSSBytes-(4<<20) {
		t.Errorf("tree RSS %d, want the parent's %d + the child's %d (which touched %d)", all.RSSBytes, parent.RSSBytes, child.RSSBytes, childBytes)
	}
	if all.CPUSeconds < childBurn || all.CPUSeconds < parent.CPUSeconds+child.CPUSeconds {
		t.Errorf("tree CPU %.2f s, want at least the parent's %.2f + the child's %.2f (which burned %.1f)", all.CPUSeconds, parent.CPUSeconds, child.CPUSeconds, childBurn)
	}
	// Thread counts move (the Go runtime starts threads): check that the
	// child's main thread is among the tree's, and the parent's too.
	tids := map[int]bool{}
	for _, tk := range all.Tasks {
		tids[tk.TID] = true
	}
	if !tids[tr.child] || !tids[tr.parent] || all.Threads <= child.Threads {
		t.Errorf("tree has %d threads (%d read, child's main thread %v, parent's %v); the child alone had %d",
			all.Threads, len(all.Tasks), tids[tr.child], tids[tr.parent], child.Threads)
	}
	alone, err := ReadTree(tr.parent, map[int]bool{tr.child: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(alone.Descendants) != 0 || alone.RSSBytes >= childBytes {
		t.Errorf("with the child skipped: %d descendants, RSS %d", len(alone.Descendants), alone.RSSBytes)
	}
	snap, err := TakeSnapshot(t.Context(), []int{tr.parent, tr.child}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := snap.Procs[tr.parent].Descendants; len(d) != 0 {
		t.Errorf("snapshot of both counted the child in the parent too: %+v", d)
	}
	scanned, err := scanChildren(tr.parent)
	if err != nil {
		t.Fatal(err)
	}
	listed, err := childrenOf(tr.parent)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(scanned, []int{tr.child}) || !slices.Equal(listed, []int{tr.child}) {
		t.Errorf("children of the parent: scanned %v, listed %v, want [%d]", scanned, listed, tr.child)
	}
}

// TestDiffTreeChildReaped: when the child exits and its parent waits for it
// between two snapshots, the tree's CPU delta is what the child burned in
// between, neither lost nor counted twice.
func TestDiffTreeChildReaped(t *testing.T) {
	tr := startTree(t)
	ctx := t.Context()
	before, err := TakeSnapshot(ctx, []int{tr.parent}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(tr.child, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	tr.expect(t, "reaped")
	tr.child = 0
	after, err := TakeSnapshot(ctx, []int{tr.parent}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(after.Procs[tr.parent].Descendants); n != 0 {
		t.Errorf("%d descendants after the child was reaped", n)
	}
	d := Diff(before, after).Procs[tr.parent]
	t.Logf("tree CPU delta %.2f s (the child burned %.1f s in between, %.1f s before)", d.CPUSeconds, childLastBurn, childBurn)
	if d.CPUSeconds < childLastBurn-0.05 || d.CPUSeconds > childLastBurn+0.15 {
		t.Errorf("tree CPU delta %.2f s, want about %.1f s (what the child burned between the snapshots)", d.CPUSeconds, childLastBurn)
	}
}
