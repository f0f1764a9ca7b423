package proxy

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime"
)

// Main is the `meshbench proxy` subcommand: it parses args (flags --xds,
// --node-id, --admin, --outbound-port, --inbound-port, --engine,
// --connect-timeout, --concurrency, --verbose) and runs the proxy until ctx ends. Logs go
// to stderr; usage errors are returned.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		xds      = fs.String("xds", "", "control plane unix socket (required)")
		node     = fs.String("node-id", "", `node id, e.g. "sidecar~<pod>" (required)`)
		cluster  = fs.String("cluster", "meshbench", "node cluster")
		admin    = fs.String("admin", DefaultAdminAddr, "admin address (/stats, /ready, /config_dump, /memory)")
		outPort  = fs.Int("outbound-port", DefaultOutboundPort, "outbound listener port (-1: off)")
		inPort   = fs.Int("inbound-port", DefaultInboundPort, "inbound listener port (-1: off)")
		engine   = fs.String("engine", "builtin", "proxy engine: builtin, envoy or haproxy")
		timeout  = fs.Duration("connect-timeout", DefaultConnectTimeout, "give up when the control plane sends no configuration in this time")
		verbose  = fs.Bool("verbose", false, "debug logging")
		origIP   = fs.Bool("inbound-original-ip", false, "inbound: dial the original destination address instead of 127.0.0.1 (a node proxy delivering to its pods)")
		confDir  = fs.String("config-dir", "", "envoy and haproxy engines: directory for the bootstrap file, or haproxy.cfg and its runtime API socket")
		envoyBin = fs.String("envoy-binary", "", "envoy engine: binary (default: envoy on PATH)")
		workers  = fs.Int("concurrency", 0, "worker threads: envoy's --concurrency and haproxy's nbthread (default 1), the builtin engine's GOMAXPROCS (default Go's: the machine's cores)")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *xds == "" || *node == "" {
		fs.Usage()
		return errors.New("proxy: --xds and --node-id are required")
	}
	if *workers < 0 {
		return fmt.Errorf("proxy: --concurrency %d: want at least 1", *workers)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	var e Engine
	switch *engine {
	case "builtin":
		// Go's Ps are not workers: with one P, sysmon takes it from every
		// syscall that spans one of its ticks and wakes another thread to
		// run it, so one P cost more CPU per request than two here
		// (datapaths/proxy/PERFORMANCE.md). Left at Go's default unless set.
		if *workers > 0 {
			runtime.GOMAXPROCS(*workers)
		}
		e = NewBuiltin(Options{
			XDSSocket: *xds, NodeID: *node, Cluster: *cluster, AdminAddr: *admin,
			OutboundPort: *outPort, InboundPort: *inPort, ConnectTimeout: *timeout, Logger: log,
			InboundOriginalIP: *origIP,
		})
	case "envoy":
		e = NewEnvoy(EnvoyOptions{
			Binary: *envoyBin, XDSSocket: *xds, NodeID: *node, Cluster: *cluster, AdminAddr: *admin,
			ConfigDir: *confDir, ConnectTimeout: *timeout, Concurrency: *workers, Stdout: stdout, Stderr: stderr, Logger: log,
		})
	case EngineHAProxy:
		e = NewHAProxy(HAProxyEngineOptions{
			XDSSocket: *xds, NodeID: *node, Cluster: *cluster, AdminAddr: *admin,
			OutboundPort: *outPort, InboundPort: *inPort, ConfigDir: *confDir, ConnectTimeout: *timeout,
			Threads: *workers, Stdout: stdout, Stderr: stderr, Logger: log,
		})
	default:
		return fmt.Errorf("proxy: unknown engine %q (builtin, envoy, haproxy)", *engine)
	}
	return RunEngine(ctx, e)
}
