package kube

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/meshbench/meshbench/internal/kubeenv"
)

// TestMain removes what crashed runs of these tests left, then fails the
// package if its own control planes and nodes left anything (processes,
// mounts, network namespaces, cgroups, run directories) behind.
func TestMain(m *testing.M) {
	root := os.Geteuid() == 0
	if root {
		if removed, err := kubeenv.Down(context.Background(), ""); err != nil || len(removed) > 0 {
			fmt.Fprintf(os.Stderr, "kube: removed leftovers of crashed runs: %v (%v)\n", removed, err)
		}
	}
	code := m.Run()
	if root {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		removed, err := kubeenv.Down(ctx, "")
		cancel()
		if err != nil || len(removed) > 0 {
			fmt.Fprintf(os.Stderr, "kube: the tests left behind: %v (%v)\n", removed, err)
			code = 1
		}
	}
	os.Exit(code)
}
