package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/meshbench/meshbench/datapaths/controlplane"
	"github.com/meshbench/meshbench/internal/nsutil"
)

// rssKiB reads a process's VmRSS or VmHWM from /proc.
func procKiB(t *testing.T, pid int, field string) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// TestMemory measures the builtin proxy's memory in its own process, in a
// netns where iptables redirects the app's connections to it: idle, under
// load, and as the configuration grows to 10, 100 and 1000 endpoints.
// Numbers are logged (see MEMORY.md), not asserted.
func TestMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("memory measurement skipped in -short mode")
	}
	name, path := redirectNetns(t)
	env := newEnv(t)
	// Backends inside the netns, served by this process.
	var eps []controlplane.Endpoint
	for i := 0; i < 4; i++ {
		l, err := nsutil.Listen(path, "tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			_, _ = w.Write([]byte(strings.Repeat("x", 64)))
		})}
		go func() { _ = srv.Serve(l) }()
		t.Cleanup(func() { _ = srv.Close() })
		eps = append(eps, controlplane.Endpoint{Pod: fmt.Sprintf("pod-%d", i), IP: netip.MustParseAddr("127.0.0.1"), Port: l.Addr().(*net.TCPAddr).Port, Healthy: true})
	}
	const node = "sidecar~mem"
	base := controlplane.Model{Proxies: []string{node}, Services: []controlplane.Service{{Name: "echo", Port: 8080, VIP: testVIP, Endpoints: eps}}}
	env.set(t, base)
	redirect(t, name, netip.AddrPortFrom(testVIP, 8080), DefaultOutboundPort)

	cmd := exec.Command("ip", "netns", "exec", name, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=--xds "+env.cp.SocketPath()+" --node-id "+node+" --inbound-port -1")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	pid := cmd.Process.Pid // ip netns exec execs the program in place
	admin := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: nsutil.Dialer(path)}}
	waitFor(t, func() bool {
		resp, err := admin.Get("http://127.0.0.1:15000/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	memory := func(gc bool) Memory {
		url := "http://127.0.0.1:15000/memory"
		if gc {
			url += "?gc=1"
		}
		resp, err := admin.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m Memory
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	var rows []string
	row := func(label string, m Memory) {
		rows = append(rows, fmt.Sprintf("| %s | %.2f | %.2f | %.1f | %d |", label,
			float64(m.HeapInuse)/(1<<20), float64(m.HeapAlloc)/(1<<20), float64(procKiB(t, pid, "VmRSS"))/1024, m.Goroutines))
	}
	row("idle, 4 endpoints (after GC)", memory(true))

	// Load: 32 keep-alive connections for 3 s, 64-byte bodies.
	const conns = 32
	var ok, failed atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{DialContext: nsutil.Dialer(path), MaxIdleConnsPerHost: 1}
			defer tr.CloseIdleConnections()
			c := &http.Client{Timeout: 5 * time.Second, Transport: tr}
			for n := 0; n < 200000 && ctx.Err() == nil; n++ {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://198.18.200.1:8080/", strings.NewReader(strings.Repeat("y", 64)))
				resp, err := c.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						failed.Add(1)
					}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					ok.Add(1)
				} else {
					failed.Add(1)
				}
			}
		}()
	}
	time.Sleep(2 * time.Second)
	row(fmt.Sprintf("under load, %d connections (no GC)", conns), memory(false))
	wg.Wait()
	cancel()
	if ok.Load() == 0 || failed.Load() > 0 {
		t.Errorf("load: %d ok, %d failed", ok.Load(), failed.Load())
	}
	st, err := ReadStats(context.Background(), nsutil.Netns{Path: path}, DefaultAdminAddr)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Listeners["outbound"]["rq_2xx"]; got < ok.Load() {
		t.Errorf("proxy counted %d 2xx on the outbound listener, the client got %d", got, ok.Load())
	}
	peak := procKiB(t, pid, "VmHWM")
	row("idle after load (after GC)", memory(true))

	for _, n := range []int{10, 100, 1000} {
		m := base
		big := controlplane.Service{Name: "big", Port: 9090, VIP: netip.MustParseAddr("198.19.128.9")}
		for i := 0; i < n; i++ {
			big.Endpoints = append(big.Endpoints, controlplane.Endpoint{Pod: "p", IP: netip.AddrFrom4([4]byte{198, 18, byte(i / 250), byte(i%250 + 1)}), Port: 9090, Healthy: true})
		}
		m.Services = append([]controlplane.Service{big}, base.Services...)
		env.set(t, m, node)
		row(fmt.Sprintf("config with a %d-endpoint service (after GC)", n), memory(true))
	}
	t.Logf("builtin proxy memory (requests under load: %d ok, %d failed; peak RSS %.1f MiB)\n| state | heap in use MiB | heap alloc MiB | RSS MiB | goroutines |\n|---|---|---|---|---|\n%s",
		ok.Load(), failed.Load(), float64(peak)/1024, strings.Join(rows, "\n"))
}
