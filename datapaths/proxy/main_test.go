package proxy

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// childEnv makes the test binary run `proxy.Main` instead of the tests, so
// that a test can measure a proxy in its own process.
const childEnv = "MESHBENCH_PROXY_CHILD_ARGS"

// fakeEnvoy, when set (Linux), runs instead of the tests when the test
// binary is started under the name "envoy": a stand-in for the Envoy
// binary, for tests of the engine around it.
var fakeEnvoy func()

func TestMain(m *testing.M) {
	if fakeEnvoy != nil && filepath.Base(os.Args[0]) == "envoy" {
		fakeEnvoy()
		os.Exit(0)
	}
	if args, ok := os.LookupEnv(childEnv); ok {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		err := Main(ctx, strings.Fields(args), os.Stdout, os.Stderr)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
