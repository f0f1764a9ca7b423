package proxy

import (
	"bytes"
	"context"
	"fmt"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/datapaths/controlplane"
	"github.com/meshbench/meshbench/internal/nsutil"
)

// Engine is a proxy engine: a process that gets its configuration from the
// control plane over xDS and carries a pod's (or a node's) traffic.
type Engine interface {
	// Name is the engine's name in scenarios and results: "builtin" or
	// "envoy".
	Name() string
	// Start starts the proxy and returns once it is starting; it does not
	// wait for configuration. The proxy runs until ctx ends or Stop. It returns an error when the proxy cannot be
	// started (a port in use, a missing binary); nothing is left running
	// then.
	Start(ctx context.Context) error
	// Ready returns nil once the proxy has applied its first full
	// configuration from the control plane. It returns an error wrapping
	// ErrControlPlaneUnreachable when none came in the engine's bounded
	// time, another error when the proxy died, or ctx's error.
	Ready(ctx context.Context) error
	// Counters reads the proxy's counters, flattened to name → value, the
	// proof that it carries traffic.
	Counters(ctx context.Context) (map[string]int64, error)
	// Stop stops the proxy and waits for it to exit. It is safe to call
	// more than once and after a failed Start.
	Stop(ctx context.Context) error
}

// Engine names, as scenarios and `meshbench proxy --engine` spell them.
const (
	EngineBuiltin = "builtin"
	EngineEnvoy   = "envoy"
	EngineHAProxy = "haproxy"
	EngineAuto    = "auto"
)

// ResolveEngine turns a scenario engine ("auto", "builtin", "envoy",
// "haproxy") into the engine to run: auto picks Envoy when a binary is
// found (envoyBinary, or envoy on PATH when it is ""), else builtin. Envoy
// or haproxy without a binary is an error wrapping
// datapaths.ErrNotSupported.
func ResolveEngine(engine, envoyBinary string) (string, error) {
	switch engine {
	case "", EngineAuto:
		if _, err := EnvoyAvailable(envoyBinary); err == nil {
			return EngineEnvoy, nil
		}
		return EngineBuiltin, nil
	case EngineBuiltin:
		return EngineBuiltin, nil
	case EngineEnvoy:
		if _, err := EnvoyAvailable(envoyBinary); err != nil {
			return "", fmt.Errorf("engine envoy: %w: %w", err, datapaths.ErrNotSupported)
		}
		return EngineEnvoy, nil
	case EngineHAProxy:
		if _, err := HAProxyAvailable(""); err != nil {
			return "", fmt.Errorf("engine haproxy: %w: %w", err, datapaths.ErrNotSupported)
		}
		return EngineHAProxy, nil
	default:
		return "", fmt.Errorf("unknown proxy engine %q", engine)
	}
}

// Reading is one read of a running proxy's /stats.
type Reading struct {
	// Counters are flattened to name → value.
	Counters map[string]int64
	// View is the proof's view of them.
	View View
	// Notes are the settings the engine does not apply as configured
	// (Stats.Notes); none from Envoy.
	Notes []string
}

// ReadCounters reads the counters of a running proxy of engine (as
// ResolveEngine returns it) from its admin address inside the network
// namespace ns: flattened to name → value, the proof's view of them (the
// builtin engine's JSON /stats, or Envoy's text /stats, whose view has no
// per-endpoint counts: View.Sent is nil) and the engine's notes.
func ReadCounters(ctx context.Context, engine string, ns nsutil.Netns, adminAddr string) (Reading, error) {
	if engine == EngineEnvoy {
		body, err := datapaths.Get(ctx, ns, adminAddr, "/stats")
		if err != nil {
			return Reading{}, fmt.Errorf("read envoy stats: %w", err)
		}
		st, err := ParseEnvoyStats(bytes.NewReader(body))
		if err != nil {
			return Reading{}, err
		}
		return Reading{Counters: st, View: EnvoyView(st)}, nil
	}
	st, err := ReadStats(ctx, ns, adminAddr)
	if err != nil {
		return Reading{}, err
	}
	return Reading{Counters: st.Flatten(), View: st.View(controlplane.OutboundListener, controlplane.InboundListener), Notes: st.Notes}, nil
}
