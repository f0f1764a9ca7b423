package proxy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/meshbench/meshbench/datapaths/controlplane"
	"github.com/meshbench/meshbench/harness/testbed/testutil"
	"github.com/meshbench/meshbench/internal/nsutil"
)

// testVIP is a service address that exists only inside the test's netns.
var testVIP = netip.MustParseAddr("198.18.200.1")

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// redirectNetns creates a throwaway network namespace with testVIP on its
// loopback, and returns its name and path. It skips when not root or when
// iptables is missing; everything is removed in t.Cleanup.
func redirectNetns(t *testing.T) (name, path string) {
	t.Helper()
	testutil.Privileged(t)
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("iptables is not installed (apt-get install iptables)")
	}
	name = "mbt-" + testutil.RandomRunID()
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	run(t, "ip", "-n", name, "addr", "add", testVIP.String()+"/32", "dev", "lo")
	return name, "/var/run/netns/" + name
}

// redirect adds, inside the netns only, an iptables nat OUTPUT rule that
// redirects connections to dst to toPort, removed in t.Cleanup.
func redirect(t *testing.T, netns string, dst netip.AddrPort, toPort int) {
	t.Helper()
	rule := []string{"-p", "tcp", "-d", dst.Addr().String(), "--dport", fmt.Sprint(dst.Port()), "-j", "REDIRECT", "--to-ports", fmt.Sprint(toPort)}
	run(t, append([]string{"ip", "netns", "exec", netns, "iptables", "-w", "-t", "nat", "-A", "OUTPUT"}, rule...)...)
	t.Cleanup(func() {
		_ = exec.Command("ip", append([]string{"netns", "exec", netns, "iptables", "-w", "-t", "nat", "-D", "OUTPUT"}, rule...)...).Run()
	})
}

func TestOriginalDstRedirect(t *testing.T) {
	name, path := redirectNetns(t)
	l, err := nsutil.Listen(path, "tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	dst := netip.AddrPortFrom(testVIP, 8080)
	redirect(t, name, dst, port)
	for _, tc := range []struct {
		name   string
		dial   string
		want   netip.AddrPort
		errSub string
	}{
		{"redirected", dst.String(), dst, ""},
		// Conntrack knows the connection: its original destination is the
		// listener itself (the proxy refuses such connections as loops).
		{"not redirected", fmt.Sprintf("127.0.0.1:%d", port), netip.MustParseAddrPort(fmt.Sprintf("127.0.0.1:%d", port)), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := nsutil.Dial(ctx, path, "tcp4", tc.dial)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			got, err := OriginalDst(plain(s))
			if tc.errSub != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errSub) {
					t.Fatalf("OriginalDst = %v, %v; want error %q", got, err, tc.errSub)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("OriginalDst = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// TestRedirectedThroughProxy sends an application's request to a service
// VIP inside a netns; iptables redirects it to the proxy's outbound
// listener (created in the netns), which routes it by SO_ORIGINAL_DST.
func TestRedirectedThroughProxy(t *testing.T) {
	name, path := redirectNetns(t)
	b := newBackend(t, "pod-1") // dialed by the proxy from this process's netns
	env := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := NewBuiltin(Options{
		XDSSocket: env.cp.SocketPath(), NodeID: "sidecar~app", AdminAddr: "127.0.0.1:0",
		OutboundPort: FreePort, InboundPort: Disabled,
		Listen: func(n, a string) (net.Listener, error) { return nsutil.Listen(path, n, a) },
	})
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Stop(context.Background())
	env.set(t, controlplane.Model{Services: []controlplane.Service{{Name: "echo", Port: 8080, VIP: testVIP, Endpoints: endpoints(b)}}}, "sidecar~app")
	redirect(t, name, netip.AddrPortFrom(testVIP, 8080), p.OutboundAddr().(*net.TCPAddr).Port)

	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: nsutil.Dialer(path)}}
	for i := 0; i < 3; i++ {
		if code, body := get(t, c, "http://198.18.200.1:8080/"); code != 200 || body != "pod-1" {
			t.Fatalf("%d %q", code, body)
		}
	}
	st := adminStats(t, p)
	if st.Listeners["outbound"]["rq_2xx"] != 3 || st.Listeners["outbound"]["no_route"] != 0 {
		t.Errorf("outbound counters %v", st.Listeners["outbound"])
	}

	// A connection straight to the listener would loop: it is closed.
	conn, err := nsutil.Dial(ctx, path, "tcp4", fmt.Sprintf("127.0.0.1:%d", p.OutboundAddr().(*net.TCPAddr).Port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := conn.Read(make([]byte, 1)); err == nil {
		t.Errorf("direct connection to the listener read %d bytes, want it closed", n)
	}
	if n := adminStats(t, p).Listeners["outbound"]["no_route"]; n != 1 {
		t.Errorf("no_route = %d, want 1", n)
	}
}
