package proxy

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/meshbench/meshbench/harness/metrics"
)

// What the fake Envoy does before it answers /ready.
const (
	fakeEnvoyBytes = 48 << 20 // touched
	fakeEnvoyBurn  = 0.3      // CPU seconds
)

func init() { fakeEnvoy = runFakeEnvoy }

// runFakeEnvoy stands in for the Envoy binary: it reads the admin address
// from the bootstrap (-c), touches fakeEnvoyBytes, burns fakeEnvoyBurn s of
// CPU, then answers /ready and /stats until SIGTERM.
func runFakeEnvoy() {
	fs := flag.NewFlagSet("envoy", flag.ContinueOnError)
	conf := fs.String("c", "", "bootstrap")
	fs.String("concurrency", "", "")
	fs.String("base-id-path", "", "")
	fs.Bool("use-dynamic-base-id", false, "")
	fs.String("log-level", "", "")
	fs.String("service-node", "", "")
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "fake envoy:", err)
		os.Exit(1)
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		fail(err)
	}
	raw, err := os.ReadFile(*conf)
	if err != nil {
		fail(err)
	}
	var b struct {
		Admin struct {
			Address struct {
				SocketAddress struct {
					Address   string `yaml:"address"`
					PortValue int    `yaml:"portValue"`
				} `yaml:"socketAddress"`
			} `yaml:"address"`
		} `yaml:"admin"`
	}
	if err := yaml.Unmarshal(raw, &b); err != nil {
		fail(err)
	}
	mem := make([]byte, fakeEnvoyBytes)
	for i := 0; i < len(mem); i += 4096 {
		mem[i] = 1
	}
	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	for x := 0; ; x++ {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		if cpu(ru)-cpu(ru0) >= fakeEnvoyBurn {
			break
		}
		for i := range 100_000 {
			x += i
		}
	}
	sa := b.Admin.Address.SocketAddress
	l, err := net.Listen("tcp", net.JoinHostPort(sa.Address, strconv.Itoa(sa.PortValue)))
	if err != nil {
		fail(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "LIVE") })
	mux.HandleFunc("/stats", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "http.outbound.downstream_rq_2xx: 7\nfake.touched_bytes: %d\n", len(mem))
	})
	go func() { _ = http.Serve(l, mux) }()
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	<-term
}

func cpu(ru syscall.Rusage) float64 {
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

// fakeEnvoyBinary returns a path named "envoy" that runs this test binary as
// the fake Envoy.
func fakeEnvoyBinary(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "envoy")
	if err := os.Symlink(os.Args[0], path); err != nil {
		t.Fatal(err)
	}
	return path
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestEnvoyWrapperMeasured runs `meshbench proxy --engine envoy` with a fake
// Envoy binary, as the sidecar datapath does, and checks what the harness
// measures for the proxy: the wrapper's process tree holds the Envoy child,
// whose memory and CPU count; and killing the wrapper (chaos proxy-kill)
// kills Envoy too.
func TestEnvoyWrapperMeasured(t *testing.T) {
	bin := fakeEnvoyBinary(t)
	admin := "127.0.0.1:" + strconv.Itoa(freePort(t))
	args := fmt.Sprintf("--xds %s --node-id sidecar~fake --engine envoy --envoy-binary %s --config-dir %s --admin %s --connect-timeout 30s",
		filepath.Join(t.TempDir(), "xds.sock"), bin, t.TempDir(), admin)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+args)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	wrapper := cmd.Process.Pid
	waited := false
	t.Cleanup(func() {
		if !waited {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e := NewEnvoy(EnvoyOptions{AdminAddr: admin})
	st, err := pollCounters(ctx, e)
	if err != nil {
		t.Fatalf("the wrapper's Envoy never answered: %v", err)
	}
	if st["http.outbound.downstream_rq_2xx"] != 7 {
		t.Errorf("stats %v, want the fake's", st)
	}

	alone, err := metrics.ReadProcess(wrapper)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := metrics.ReadTree(wrapper, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wrapper alone: %.2f s CPU, RSS %d MiB, %d threads; wrapper + Envoy: %.2f s CPU, RSS %d MiB, PSS %d MiB, %d threads; descendants %+v",
		alone.CPUSeconds, alone.RSSBytes>>20, alone.Threads, tree.CPUSeconds, tree.RSSBytes>>20, tree.PSSBytes>>20, tree.Threads, tree.Descendants)
	i := slices.IndexFunc(tree.Descendants, func(m metrics.Member) bool { return m.Comm == "envoy" })
	if i < 0 {
		t.Fatalf("no envoy among the wrapper's descendants %+v", tree.Descendants)
	}
	envoy := tree.Descendants[i]
	if envoy.PPID != wrapper {
		t.Errorf("envoy's parent is %d, want the wrapper %d", envoy.PPID, wrapper)
	}
	if tree.RSSBytes < alone.RSSBytes+fakeEnvoyBytes || tree.PSSBytes < fakeEnvoyBytes {
		t.Errorf("wrapper + Envoy RSS %d, PSS %d: want the wrapper's %d + Envoy's %d at least", tree.RSSBytes, tree.PSSBytes, alone.RSSBytes, fakeEnvoyBytes)
	}
	if tree.CPUSeconds < alone.CPUSeconds+fakeEnvoyBurn-0.02 {
		t.Errorf("wrapper + Envoy CPU %.2f s, want the wrapper's %.2f + Envoy's %.1f", tree.CPUSeconds, alone.CPUSeconds, fakeEnvoyBurn)
	}
	if tree.Threads <= alone.Threads {
		t.Errorf("wrapper + Envoy have %d threads, the wrapper alone %d", tree.Threads, alone.Threads)
	}

	// proxy-kill: SIGKILL to the process the harness started.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waited = true
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := metrics.ReadProcess(envoy.PID)
		if err != nil {
			break // gone (or a zombie)
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(envoy.PID, syscall.SIGKILL)
			t.Fatal("Envoy outlived its killed wrapper by 5 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func pollCounters(ctx context.Context, e *Envoy) (map[string]int64, error) {
	for {
		st, err := e.Counters(ctx)
		if err == nil {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(50 * time.Millisecond):
		}
	}
}
