package agent

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/meshbench/meshbench/internal/cgroupfs"
)

// Main runs `meshbench agent`: it serves the agent's API until ctx ends
// (SIGTERM), then stops every process it started.
//
// It listens only on a unix socket or a loopback address: on Kubernetes
// the harness reaches it by port-forward through the API server (which
// connects to the pod's loopback), so no port is open to the network.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:15080", "loopback address (host:port) or unix:PATH to serve on")
	tokenFile := fs.String("token-file", "", "file holding the token every call must carry (default: $MESHBENCH_AGENT_TOKEN)")
	hostRoot := fs.String("host-root", "", "where the node's root filesystem is mounted (its network tools run chrooted there); empty: /")
	hostNetns := fs.String("host-netns", "", "the node's network namespace (default: the agent's own)")
	runID := fs.String("run", "", "the run the agent serves: its rules in the node's namespace are removed when the agent starts and stops")
	allowProgram := fs.Bool("allow-program", false, "let Start run any program the harness names, not only the agent's own executable (the embedded testbed)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	token := os.Getenv("MESHBENCH_AGENT_TOKEN")
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	l, err := listenLocal(*listen)
	if err != nil {
		return err
	}
	res := &Resolver{HostNetns: *hostNetns, Agent: os.Getpid()}
	if *hostRoot != "" && *hostRoot != "/" {
		// The node's cgroup hierarchies, not the container's.
		roots, err := cgroupfs.FindUnder(*hostRoot)
		if err != nil {
			l.Close()
			return err
		}
		if roots.V2 == "" && roots.V1Memory == "" {
			l.Close()
			return fmt.Errorf("agent: no cgroup hierarchy mounted under %s (mount the node's / there, with its submounts)", *hostRoot)
		}
		res.Roots = &roots
	}
	srv := &Server{Resolver: res, HostRoot: *hostRoot, Token: token, AllowProgram: *allowProgram, RunID: *runID}
	if n, err := srv.RemoveNodeRules(context.Background()); err != nil {
		fmt.Fprintf(stdout, "agent: remove the run's stale node rules: %v\n", err)
	} else if n > 0 {
		fmt.Fprintf(stdout, "agent: removed %d stale node rules of run %s\n", n, *runID)
	}
	g, err := srv.GRPCServer()
	if err != nil {
		l.Close()
		return err
	}
	fmt.Fprintf(stdout, "agent: serving on %s\n", l.Addr())
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(l) }()
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	g.Stop()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return errors.Join(err, srv.StopAll(sctx))
}

// listenLocal listens on a unix socket ("unix:PATH") or a loopback TCP
// address, and refuses anything else.
func listenLocal(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		return net.Listen("unix", path)
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("agent: --listen %q: want host:port with a loopback IP, or unix:PATH", addr)
	}
	if !ap.Addr().IsLoopback() {
		return nil, fmt.Errorf("agent: --listen %s: not a loopback address (the agent is reached by port-forward only)", addr)
	}
	return net.Listen("tcp", ap.String())
}
