package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshbench/meshbench/datapaths/controlplane"
	"github.com/meshbench/meshbench/internal/nsutil"
)

// TestHAProxyRoutesByOriginalDst runs haproxy on the configuration
// rendered for a sidecar, in a namespace where iptables REDIRECTs two
// services' addresses to its outbound listener, and checks that each
// request reaches the service it was sent to: HAProxy reads the original
// destination (SO_ORIGINAL_DST) for its dst ACLs, switches the stream to
// HTTP and picks the backend by Host. The runtime API's counters show the
// requests on each backend's server.
func TestHAProxyRoutesByOriginalDst(t *testing.T) {
	name, path := redirectNetns(t)
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatal("haproxy missing: `make test` installs it (ci/install-deps.sh test)")
	}
	ip := netip.MustParseAddr
	vips := []netip.AddrPort{netip.AddrPortFrom(testVIP, 8080), netip.AddrPortFrom(ip("198.18.200.2"), 9090)}
	eps := []netip.AddrPort{netip.MustParseAddrPort("198.18.201.1:8080"), netip.MustParseAddrPort("198.18.201.2:9090")}
	for _, a := range []netip.Addr{vips[1].Addr(), eps[0].Addr(), eps[1].Addr()} {
		run(t, "ip", "-n", name, "addr", "add", a.String()+"/32", "dev", "lo")
	}
	m := controlplane.Model{Proxies: []string{"sidecar~client"}}
	for i, svc := range []string{"echo", "users"} {
		l, err := nsutil.Listen(path, "tcp4", eps[i].String())
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "%s via %s", svc, r.Host) })}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
		m.Services = append(m.Services, controlplane.Service{
			Name: svc, Port: int(vips[i].Port()), VIP: vips[i].Addr(), Protocol: controlplane.HTTP,
			Endpoints: []controlplane.Endpoint{{Pod: svc + "-0", IP: eps[i].Addr(), Port: int(eps[i].Port()), Healthy: true}},
		})
	}
	res, err := controlplane.Resources(&m, "sidecar~client")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "haproxy.sock")
	const outbound = 15101
	cfg, err := renderHAProxy(compileResources(t, res), HAProxyOptions{OutboundPort: outbound, InboundPort: 15106, StatsSocket: sock})
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg.text), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, v := range vips {
		redirect(t, name, v, outbound)
	}
	cmd := exec.Command("ip", "netns", "exec", name, haproxy, "-db", "-f", cfgPath)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("haproxy did not start: %s", stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: nsutil.Dialer(path)}, Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	for i, svc := range []string{"echo", "users"} {
		for range 3 {
			resp, err := hc.Get("http://" + vips[i].String() + "/")
			if err != nil {
				t.Fatalf("GET %s: %v (haproxy: %s)", vips[i], err, stderr.String())
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := svc + " via " + vips[i].String(); resp.StatusCode != 200 || string(body) != want {
				t.Errorf("GET %s: %d %q, want 200 %q", vips[i], resp.StatusCode, body, want)
			}
		}
	}
	// A Host no virtual host names: 404, as Envoy answers.
	req, _ := http.NewRequest("GET", "http://"+vips[0].String()+"/", nil)
	req.Host = "nobody"
	if resp, err := hc.Do(req); err != nil || resp.StatusCode != 404 {
		t.Errorf("GET with Host nobody: %v %v, want 404", resp, err)
	} else {
		resp.Body.Close()
	}
	stats := showStat(t, sock)
	for _, be := range []string{cfg.backends["outbound|8080||echo"], cfg.backends["outbound|9090||users"]} {
		if got := stats[be+"/ep0"]["hrsp_2xx"]; got != "3" {
			t.Errorf("%s/ep0 hrsp_2xx %q, want 3 (stats %v)", be, got, stats[be+"/ep0"])
		}
	}
}

// showStat reads the runtime API's `show stat` into proxy/server → field →
// value.
func showStat(t *testing.T, sock string) map[string]map[string]string {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "show stat\n")
	raw, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	head := strings.Split(strings.TrimPrefix(lines[0], "# "), ",")
	out := map[string]map[string]string{}
	for _, l := range lines[1:] {
		f := strings.Split(l, ",")
		row := map[string]string{}
		for i, v := range f {
			if i < len(head) {
				row[head[i]] = v
			}
		}
		out[row["pxname"]+"/"+row["svname"]] = row
	}
	return out
}

// TestHAProxyEngine runs the haproxy engine against the control plane: it
// gets the sidecar's configuration over xDS, starts haproxy (in a
// namespace where iptables REDIRECTs the service's address to it), and
// the requests are balanced over both endpoints. An endpoint taken out
// of service, and one replaced by a new address, reach the running
// haproxy through its runtime API (no restart), ACKed once applied; the
// engine's /stats shows haproxy's counters in the builtin engine's form.
func TestHAProxyEngine(t *testing.T) {
	name, path := redirectNetns(t)
	vip := netip.AddrPortFrom(testVIP, 8080)
	eps := []netip.AddrPort{netip.MustParseAddrPort("198.18.201.1:8080"), netip.MustParseAddrPort("198.18.201.2:8080"), netip.MustParseAddrPort("198.18.201.3:8080")}
	svc := controlplane.Service{Name: "echo", Port: 8080, VIP: testVIP, Protocol: controlplane.HTTP}
	for i, ep := range eps {
		run(t, "ip", "-n", name, "addr", "add", ep.Addr().String()+"/32", "dev", "lo")
		l, err := nsutil.Listen(path, "tcp4", ep.String())
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, ep.Addr()) })}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
		if i < 2 {
			svc.Endpoints = append(svc.Endpoints, controlplane.Endpoint{Pod: fmt.Sprintf("echo-%d", i), IP: ep.Addr(), Port: 8080, Healthy: true})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	sock := filepath.Join(dir, "xds.sock")
	s, err := controlplane.StartSession(ctx, sock, controlplane.Model{Proxies: []string{"sidecar~client"}, Services: []controlplane.Service{svc}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	const outbound = 15101
	var logs strings.Builder
	e := NewHAProxy(HAProxyEngineOptions{
		XDSSocket: sock, NodeID: "sidecar~client", AdminAddr: "127.0.0.1:0", OutboundPort: outbound, InboundPort: Disabled,
		ConfigDir: dir, Netns: path, Stdout: &logs, Stderr: &logs,
	})
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Stop(context.Background())
	if err := e.Ready(ctx); err != nil {
		t.Fatalf("ready: %v (haproxy: %s)", err, logs.String())
	}
	if err := s.WaitAcked(ctx); err != nil {
		t.Fatal(err)
	}
	redirect(t, name, vip, outbound)
	hc := &http.Client{Transport: &http.Transport{DialContext: nsutil.Dialer(path), DisableKeepAlives: true}, Timeout: 5 * time.Second}
	send := func(n int) map[string]int {
		t.Helper()
		got := map[string]int{}
		for range n {
			resp, err := hc.Get("http://" + vip.String() + "/")
			if err != nil {
				t.Fatalf("GET %s: %v (haproxy: %s)", vip, err, logs.String())
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got[string(body)]++
		}
		return got
	}
	if got := send(10); got["198.18.201.1"] != 5 || got["198.18.201.2"] != 5 {
		t.Errorf("round robin over two endpoints: %v, want 5 each", got)
	}
	st, err := e.Stats()
	if err != nil {
		t.Fatal(err)
	}
	v := st.View(controlplane.OutboundListener, controlplane.InboundListener)
	if v.Outbound.Rq2xx != 10 || v.Sent[eps[0].Addr()].Rq2xx != 5 || v.Sent[eps[1].Addr()].Rq2xx != 5 {
		t.Errorf("view %+v: want 10 outbound 2xx, 5 sent to each endpoint", v)
	}

	// echo-1 fails its readiness: out of the endpoints, through the
	// runtime API.
	if err := s.SetPodHealth(ctx, "echo-1", false); err != nil {
		t.Fatal(err)
	}
	if got := send(6); got["198.18.201.1"] != 6 {
		t.Errorf("with echo-1 unhealthy: %v, want all 6 on echo-0", got)
	}
	// echo-1 is replaced by a pod at another address (a deleted pod's
	// replacement), ready again.
	if err := s.SetPodAddress(ctx, "echo-1", eps[2].Addr()); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPodHealth(ctx, "echo-1", true); err != nil {
		t.Fatal(err)
	}
	// HAProxy's dynamic round robin lets a server back in service catch
	// up: the split is uneven over a few requests, but both get some.
	last := send(10)
	if last["198.18.201.1"] == 0 || last["198.18.201.3"] == 0 || last["198.18.201.1"]+last["198.18.201.3"] != 10 {
		t.Errorf("with echo-1 replaced at %s: %v, want all 10 over echo-0 and the replacement, both used", eps[2].Addr(), last)
	}
	m := e.Metrics()
	t.Logf("engine metrics %v; control plane: endpoint push to ACK %v", m, s.EndpointPush)
	if m["haproxy_restarts"] != 0 || m["haproxy_runtime_applies"] < 3 || m["haproxy_runtime_apply_us"] <= 0 {
		t.Errorf("metrics %v: want 3 endpoint changes through the runtime API and no restart", m)
	}
	resp, err := http.Get("http://" + e.AdminAddr() + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	admin, err := ParseStats(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if admin.Engine["haproxy_runtime_applies"] < 3 || admin.Engine["haproxy_restarts"] != 0 {
		t.Errorf("/stats engine figures %v: want the runtime-API applies and no restart", admin.Engine)
	}
	if got := admin.View(controlplane.OutboundListener, controlplane.InboundListener).Sent[eps[2].Addr()].Rq2xx; got != int64(last["198.18.201.3"]) {
		t.Errorf("/stats: %d 2xx sent to the replacement, want the %d it answered (hosts %v)", got, last["198.18.201.3"], admin.Hosts)
	}
}
