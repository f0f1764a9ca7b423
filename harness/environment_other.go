//go:build !linux

package harness

import (
	"os"
	"runtime"

	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/internal/version"
)

// Environment describes this machine for the results file.
func Environment(provider string) results.Environment {
	h, _ := os.Hostname()
	return results.Environment{
		Hostname: h, OS: runtime.GOOS, Arch: runtime.GOARCH, Cores: runtime.NumCPU(),
		GoVersion: runtime.Version(), Commit: version.GetCommit(), Version: version.Version, Provider: provider,
	}
}
