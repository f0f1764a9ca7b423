package proxy

import "context"

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
