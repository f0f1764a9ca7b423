// Command kube-bins builds etcd, kwok and the Kubernetes binaries that
// meshbench's tests run into the cache (see kubeenv.BinDir) unless they are
// there already, and prints the directory that holds them.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/meshbench/meshbench/internal/kubeenv"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if _, err := kubeenv.EnsureBinaries(ctx, log); err != nil {
		fmt.Fprintln(os.Stderr, "kube-bins:", err)
		os.Exit(1)
	}
	fmt.Println(kubeenv.BinDir())
}
