package sidecar

import (
	"fmt"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/datapaths/proxy"
)

// ResolveEngine turns a scenario engine ("auto", "builtin", "envoy") into
// the engine to run: auto picks Envoy when a binary is found (envoyBinary,
// or envoy on PATH when it is "").
func ResolveEngine(engine, envoyBinary string) (string, error) {
	switch engine {
	case "", "auto":
		if _, err := proxy.EnvoyAvailable(envoyBinary); err == nil {
			return "envoy", nil
		}
		return "builtin", nil
	case "builtin":
		return "builtin", nil
	case "envoy":
		if _, err := proxy.EnvoyAvailable(envoyBinary); err != nil {
			return "", fmt.Errorf("engine envoy: %w: %w", err, datapaths.ErrNotSupported)
		}
		return "envoy", nil
	default:
		return "", fmt.Errorf("unknown proxy engine %q", engine)
	}
}
