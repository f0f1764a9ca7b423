package workload

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
)

// ErrUsage is wrapped by Main's errors about the command line.
var ErrUsage = errors.New("usage")

// Main runs the workload subcommand args[0] ("echo" or "load") with the
// flags that follow, until it ends or ctx is cancelled (the caller cancels
// ctx on SIGTERM/SIGINT; both subcommands then stop cleanly and return
// nil). The load client writes its JSON-lines stream to stdout; both log to
// stderr.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: workload: no subcommand (echo or load)", ErrUsage)
	}
	switch args[0] {
	case "echo":
		o, err := ParseEchoFlags(args[1:], stderr)
		if err != nil {
			return err
		}
		o.Logger = newLogger(stderr)
		return RunEcho(ctx, o)
	case "load":
		o, err := ParseClientFlags(args[1:], stderr)
		if err != nil {
			return err
		}
		o.Logger = newLogger(stderr)
		return RunClient(ctx, o, stdout)
	default:
		return fmt.Errorf("%w: workload: unknown subcommand %q (want echo or load)", ErrUsage, args[0])
	}
}

func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// ParseEchoFlags parses the flags of "meshbench echo". Usage and flag
// errors are written to stderr.
func ParseEchoFlags(args []string, stderr io.Writer) (EchoOptions, error) {
	o := EchoOptions{}
	fs := flag.NewFlagSet("echo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Listen, "listen", DefaultEchoListen, "address of the echo service")
	fs.StringVar(&o.AdminListen, "admin", DefaultAdminListen, "address of /stats and /healthz")
	fs.IntVar(&o.ResponseSize, "response-size", DefaultResponseSize, "response body size in bytes")
	fs.StringVar(&o.PodName, "pod", "", "pod name sent in the "+PodHeader+" response header")
	if err := parse(fs, args); err != nil {
		return o, err
	}
	if o.ResponseSize < 0 {
		return o, fmt.Errorf("%w: echo: negative --response-size", ErrUsage)
	}
	return o, nil
}

// ParseClientFlags parses the flags of "meshbench load". Usage and flag
// errors are written to stderr.
func ParseClientFlags(args []string, stderr io.Writer) (ClientOptions, error) {
	o := ClientOptions{}
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var((*listFlag)(&o.Targets), "target", "host:port to send to (repeatable or comma-separated; used round robin)")
	fs.StringVar(&o.Path, "path", DefaultPath, "request path")
	fs.IntVar(&o.Rate, "rate", 100, "offered rate in requests per second")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "measured window")
	fs.DurationVar(&o.Warmup, "warmup", 2*time.Second, "warm-up before the measured window (not measured)")
	fs.IntVar(&o.Connections, "connections", DefaultConnections, "persistent connections in all, spread over the targets")
	fs.IntVar(&o.RequestSize, "request-size", 0, "request body size in bytes (0: GET)")
	fs.BoolVar(&o.KeepAlive, "keep-alive", true, "reuse connections")
	fs.DurationVar(&o.Timeout, "timeout", 0, "per-request timeout (0: vegeta default, 30s)")
	fs.DurationVar(&o.Window, "window", DefaultWindow, "width of the reported windows")
	fs.BoolVar(&o.KernelStamps, "kernel-stamps", true, "ask the kernel to timestamp requests and responses (SO_TIMESTAMPING) for the kernel-side latency")
	fs.DurationVar(&o.PacerSpin, "pacer-spin", DefaultPacerSpin, "spin this long before each send for an accurate send time, at most a quarter of the interval (0: never spin)")
	if err := parse(fs, args); err != nil {
		return o, err
	}
	if len(o.Targets) == 0 {
		return o, fmt.Errorf("%w: load: --target is required", ErrUsage)
	}
	if _, err := o.withDefaults(); err != nil {
		return o, fmt.Errorf("%w: %w", ErrUsage, err)
	}
	return o, nil
}

// parse parses args and refuses positional arguments.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %s: %w", ErrUsage, fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: %s: unexpected arguments %q", ErrUsage, fs.Name(), fs.Args())
	}
	return nil
}

// listFlag is a repeatable flag whose values may also be comma-separated.
type listFlag []string

// String returns the values joined by commas.
func (l *listFlag) String() string { return strings.Join(*l, ",") }

// Set appends the comma-separated values of v.
func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}
