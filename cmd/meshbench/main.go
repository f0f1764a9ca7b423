// Command meshbench compares service-mesh datapath architectures on a
// testbed it builds itself. See the README.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/meshbench/meshbench/cmd/meshbench/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		// A second signal gets the default behaviour (exit at once);
		// `meshbench down` removes what that leaves behind.
		stop()
	}()
	err := app.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err == nil {
		return
	}
	if len(os.Args) > 1 && (os.Args[1] == "echo" || os.Args[1] == "load" || os.Args[1] == "proxy" || os.Args[1] == "forwarder") && ctx.Err() != nil {
		// A workload stopped by the harness is not an error.
		return
	}
	fmt.Fprintf(os.Stderr, "meshbench: %v\n", err)
	switch {
	case errors.Is(err, app.ErrUsage):
		os.Exit(2)
	case errors.Is(err, app.ErrEnvironment):
		os.Exit(3)
	}
	os.Exit(1)
}
