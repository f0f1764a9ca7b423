package kubeenv

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
)

// ErrNotSupported is returned on systems where the environment cannot run
// (anything but Linux).
var ErrNotSupported = errors.New("kubeenv: needs Linux")

// Options configure StartControlPlane.
type Options struct {
	// RunID names every object of the environment on the host: network
	// namespaces mb-<id>-k*, cgroups meshbench-<id>/... . 1 to 8 lower-case
	// hex digits; default random.
	RunID string
	// Dir is the run directory that holds every file of the environment;
	// it is removed on Stop. Default: a new directory under os.TempDir().
	// It must not be under /run, /var/lib or /var/log (see Node).
	Dir string
	// Binaries to run; default: EnsureBinaries (which may build them).
	Binaries Binaries
	// KwokNodes is the number of fake nodes kwok runs (0: no kwok).
	KwokNodes int
	// Log receives progress; default: discard.
	Log *slog.Logger
}

var runIDRe = regexp.MustCompile(`^[0-9a-f]{1,8}$`)

func (o *Options) defaults() error {
	if o.RunID == "" {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("run id: %w", err)
		}
		o.RunID = hex.EncodeToString(b[:])
	}
	if !runIDRe.MatchString(o.RunID) {
		return fmt.Errorf("run id %q: want 1 to 8 lower-case hex digits", o.RunID)
	}
	if o.KwokNodes < 0 || o.KwokNodes > MaxNodes {
		return fmt.Errorf("kwok nodes %d: want 0 to %d", o.KwokNodes, MaxNodes)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Names of the objects of a run on the host. They follow the embedded
// testbed's scheme, so `meshbench down` and its leak checks find them too.

// NetnsName is the network namespace of real node i (i < 0: the fabric that
// joins the nodes).
func NetnsName(runID string, i int) string {
	if i < 0 {
		return "mb-" + runID + "-kfab"
	}
	return fmt.Sprintf("mb-%s-k%d", runID, i)
}

// CgroupTop is the cgroup, in every hierarchy, that holds every process of
// the run.
func CgroupTop(runID string) string { return "meshbench-" + runID }

// NodeName is real node i's Kubernetes name.
func NodeName(i int) string { return fmt.Sprintf("node-%d", i) }

// KwokNodeName is fake node i's Kubernetes name.
func KwokNodeName(i int) string { return fmt.Sprintf("kwok-%d", i) }
