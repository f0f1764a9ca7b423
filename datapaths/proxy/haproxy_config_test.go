package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshbench/meshbench/datapaths/controlplane"
	"github.com/meshbench/meshbench/internal/golden"
)

// haproxyModel is a mesh of three services: HTTP with least request,
// circuit breakers, retries and a timeout (one endpoint unhealthy); HTTP
// hashed on a header (Maglev); TCP at random.
func haproxyModel() controlplane.Model {
	ip := netip.MustParseAddr
	return controlplane.Model{
		Proxies: []string{"sidecar~pod-a", "nodeproxy~node-1"},
		Services: []controlplane.Service{
			{
				Name: "echo", Port: 8080, VIP: ip("198.19.128.1"), Protocol: controlplane.HTTP, LBPolicy: controlplane.LeastRequest,
				CircuitBreakers: controlplane.CircuitBreakers{MaxConnections: 100, MaxPendingRequests: 10, MaxRequests: 200, MaxRetries: 5},
				Retries:         controlplane.RetryPolicy{Attempts: 2, PerTryTimeout: 250 * time.Millisecond},
				Timeout:         2 * time.Second,
				Endpoints: []controlplane.Endpoint{
					{Pod: "pod-b", IP: ip("198.18.1.2"), Port: 8080, Healthy: true},
					{Pod: "pod-a", IP: ip("198.18.0.2"), Port: 8080, Healthy: true},
					{Pod: "pod-c", IP: ip("198.18.1.3"), Port: 8080, Healthy: false},
				},
			},
			{
				Name: "users", Port: 9090, VIP: ip("198.19.128.2"), LBPolicy: controlplane.Maglev, HashHeader: "x-user",
				Endpoints: []controlplane.Endpoint{{Pod: "pod-b", IP: ip("198.18.1.2"), Port: 9090, Healthy: true}},
			},
			{
				Name: "db", Port: 5432, VIP: ip("198.19.128.3"), Protocol: controlplane.TCP, LBPolicy: controlplane.Random,
				Endpoints: []controlplane.Endpoint{{Pod: "pod-a", IP: ip("198.18.0.2"), Port: 5432, Healthy: true}},
			},
		},
	}
}

// compileResources compiles a proxy's xDS resources as the engine's xDS
// client does, for tests.
func compileResources(t *testing.T, res map[resource.Type][]types.Resource) compiledSet {
	t.Helper()
	c := compiledSet{clusters: map[string]*clusterCfg{}, assignments: map[string][]endpoint{}, listeners: map[string]*listenerCfg{}, routes: map[string]*routeCfg{}}
	for _, rs := range res {
		for _, r := range rs {
			var err error
			switch r := r.(type) {
			case *clusterv3.Cluster:
				c.clusters[r.GetName()], err = compileCluster(r)
			case *endpointv3.ClusterLoadAssignment:
				c.assignments[r.GetClusterName()], err = compileAssignment(r)
			case *listenerv3.Listener:
				c.listeners[r.GetName()], err = compileListener(r)
			case *routev3.RouteConfiguration:
				c.routes[r.GetName()], err = compileRoutes(r)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	return c
}

// TestHAProxyConfig renders the sidecar's and the node proxy's
// configuration of the same model as haproxy.cfg, compares them with the
// golden files (go test -update rewrites them) and has haproxy
// check them (`haproxy -c`), which `make test` installs.
func TestHAProxyConfig(t *testing.T) {
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatal("haproxy missing: `make test` installs it (ci/install-deps.sh test)")
	}
	m := haproxyModel()
	for _, node := range []string{"sidecar~pod-a", "nodeproxy~node-1"} {
		t.Run(node, func(t *testing.T) {
			res, err := controlplane.Resources(&m, node)
			if err != nil {
				t.Fatal(err)
			}
			o := HAProxyOptions{StatsSocket: "/run/meshbench/haproxy.sock", ACLDir: "/run/meshbench/acl"}
			if strings.HasPrefix(node, "nodeproxy") {
				o.Threads = 2 // --concurrency 2: nbthread 2
			}
			cfg, err := renderHAProxy(compileResources(t, res), o)
			if err != nil {
				t.Fatal(err)
			}
			var text bytes.Buffer
			text.WriteString(cfg.text)
			text.WriteString("\n# Not rendered as in xDS:\n")
			for _, n := range cfg.notes {
				text.WriteString("#   " + n + "\n")
			}
			text.WriteString("\n# ACL files:\n")
			for _, path := range sortedKeys(cfg.aclFiles) {
				text.WriteString("#   " + path + ": " + strings.Join(cfg.aclFiles[path], " ") + "\n")
			}
			golden.Check(t, filepath.Join("testdata", "haproxy_"+strings.ReplaceAll(node, "~", "_")+".golden.cfg"), text.Bytes())

			// haproxy -c, with the stats socket and the ACL files in a
			// temporary directory.
			dir := t.TempDir()
			check := strings.ReplaceAll(cfg.text, "/run/meshbench/haproxy.sock", filepath.Join(dir, "haproxy.sock"))
			check = strings.ReplaceAll(check, "/run/meshbench/acl", dir)
			for path, values := range cfg.aclFiles {
				if err := os.WriteFile(filepath.Join(dir, filepath.Base(path)), []byte(strings.Join(values, "\n")+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(dir, "haproxy.cfg")
			if err := os.WriteFile(path, []byte(check), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, haproxy, "-c", "-f", path).CombinedOutput()
			if err != nil {
				t.Fatalf("haproxy -c: %v\n%s\n%s", err, out, check)
			}
			if strings.Contains(string(out), "[WARNING]") {
				t.Errorf("haproxy -c warns:\n%s", out)
			}
		})
	}
}

// TestHAProxyStatsNotes checks that the haproxy engine's Stats carry the
// settings its configuration does not render as in xDS, distinct and
// sorted, and that /stats's JSON keeps them. A stand-in for haproxy's
// runtime API answers `show stat` with no rows, so no haproxy runs.
func TestHAProxyStatsNotes(t *testing.T) {
	m := haproxyModel()
	res, err := controlplane.Resources(&m, "sidecar~pod-a")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := renderHAProxy(compileResources(t, res), HAProxyOptions{StatsSocket: "/run/meshbench/haproxy.sock"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.notes) < 2 {
		t.Fatalf("the model rendered %d notes, want several to sort", len(cfg.notes))
	}
	want := slices.Sorted(slices.Values(cfg.notes))
	// A note said twice is kept once.
	cfg.notes = append(slices.Clone(cfg.notes), cfg.notes[0])

	h := NewHAProxy(HAProxyEngineOptions{})
	st, err := h.Stats()
	if err != nil || st.Notes != nil {
		t.Fatalf("before any configuration: notes %q, err %v; want none", st.Notes, err)
	}

	h.sock = fakeRuntime(t, "# pxname,svname,scur,bin,bout\n")
	h.cfg = cfg
	st, err = h.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.Notes, want) {
		t.Errorf("notes\n%q\nwant\n%q", st.Notes, want)
	}
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(st); err != nil {
		t.Fatal(err)
	}
	back, err := ParseStats(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back.Notes, want) {
		t.Errorf("notes through /stats's JSON %q, want %q", back.Notes, want)
	}
}

// fakeRuntime serves haproxy's runtime API on a Unix socket in a
// temporary directory: every command is answered with reply.
func fakeRuntime(t *testing.T, reply string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "runtime.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = bufio.NewReader(c).ReadString('\n')
			_, _ = io.WriteString(c, reply)
			c.Close()
		}
	}()
	return sock
}
