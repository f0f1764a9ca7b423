package afxdp

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"
)

// ForwarderMain is the `meshbench forwarder` subcommand: it runs one node's
// forwarder, in the network namespace it is started in, until ctx ends,
// and serves its counters at http://<admin>/stats. args are the flags
// after the subcommand's name (a leading "forwarder" is skipped):
//
//	--config JSON   the Config, inline
//	--config-file F the Config, from a file
//	--admin ADDR    overrides Config.Admin
//	--spin D        busy-poll D after the last frame before sleeping
func ForwarderMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("forwarder", flag.ContinueOnError)
	fs.SetOutput(stderr)
	inline := fs.String("config", "", "forwarder config as JSON")
	file := fs.String("config-file", "", "file holding the forwarder config as JSON")
	admin := fs.String("admin", "", "address of the /stats endpoint (default "+AdminAddr+")")
	verbose := fs.Bool("v", false, "log debug messages")
	spin := fs.Duration("spin", DefaultSpin, "busy-poll this long after the last frame before sleeping in poll (0: never spin)")
	if len(args) > 0 && args[0] == "forwarder" {
		args = args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	var raw []byte
	switch {
	case *inline != "" && *file != "":
		return errors.New("forwarder: give --config or --config-file, not both")
	case *inline != "":
		raw = []byte(*inline)
	case *file != "":
		b, err := os.ReadFile(*file)
		if err != nil {
			return fmt.Errorf("forwarder: %w", err)
		}
		raw = b
	default:
		return errors.New("forwarder: --config or --config-file is required")
	}
	cfg, err := ParseConfig(raw)
	if err != nil {
		return err
	}
	if *admin != "" {
		cfg.Admin = *admin
	}
	if cfg.Admin == "" {
		cfg.Admin = AdminAddr
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	// Listen first: a port clash fails before anything is attached.
	ln, err := net.Listen("tcp", cfg.Admin)
	if err != nil {
		return fmt.Errorf("forwarder: admin listener: %w", err)
	}
	f, err := NewForwarder(cfg, log)
	if err != nil {
		ln.Close()
		return err
	}
	f.SetSpin(*spin)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(f.Stats())
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	fmt.Fprintf(stdout, "forwarder on node %s ready: %d sockets\n", cfg.Nodes[cfg.Node].Name, len(f.outs))
	runErr := f.Run(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return errors.Join(runErr, f.Close())
}
