package testutil

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"

	"github.com/meshbench/meshbench/harness/testbed/netns"
)

// Privileged skips the test, saying why, unless it runs as root.
func Privileged(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root to create network namespaces and cgroups (run the tests as root)")
	}
}

var (
	mu  sync.Mutex
	ids []string
)

// NewRunID returns a fresh random 8-hex-digit run id, registers it for
// TestMainLeakCheck, and registers CheckLeaks for it with tb.Cleanup. The
// check runs after the cleanups registered later (Destroy, typically), so
// it sees what the test really left.
func NewRunID(tb testing.TB) string {
	tb.Helper()
	id := RandomRunID()
	mu.Lock()
	ids = append(ids, id)
	mu.Unlock()
	tb.Cleanup(func() { CheckLeaks(tb, id) })
	return id
}

// RandomRunID returns a random 8-hex-digit run id without registering it.
func RandomRunID() string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("read random: %v", err))
	}
	return hex.EncodeToString(b[:])
}

// RunIDs returns the ids NewRunID handed out in this process.
func RunIDs() []string {
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(ids)
}

// CheckLeaks fails tb, listing them, if any object of runID (a network
// namespace, cgroup, process in either, or root-namespace interface) is
// still on the host now.
func CheckLeaks(tb testing.TB, runID string) {
	tb.Helper()
	left, err := netns.Leftovers(runID)
	if err != nil {
		tb.Errorf("check leftovers of run %s: %v", runID, err)
	}
	for _, l := range left {
		tb.Errorf("run %s leaked %s", runID, l)
	}
}

// TestMainLeakCheck runs m and then checks every run id NewRunID handed out
// in this process: it returns m's exit code, or 1 if any run left something
// behind (which it prints to stderr). Use it as
//
//	func TestMain(m *testing.M) { os.Exit(testutil.TestMainLeakCheck(m)) }
func TestMainLeakCheck(m *testing.M) int {
	code := m.Run()
	leaked := false
	for _, id := range RunIDs() {
		left, err := netns.Leftovers(id)
		if err != nil {
			fmt.Fprintf(os.Stderr, "leak check of run %s: %v\n", id, err)
			leaked = true
		}
		for _, l := range left {
			fmt.Fprintf(os.Stderr, "leak: run %s left %s\n", id, l)
			leaked = true
		}
	}
	if leaked && code == 0 {
		code = 1
	}
	return code
}
