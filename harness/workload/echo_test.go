package workload

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/meshbench/meshbench/datapaths"
)

// testEcho is an echo server on loopback for one test.
type testEcho struct {
	addr, admin string
	cancel      context.CancelFunc
	done        chan error
}

// startEcho starts an echo server on 127.0.0.1 ports chosen by the kernel;
// it is stopped when the test ends.
func startEcho(t *testing.T, size int, pod string) *testEcho {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &testEcho{addr: ln.Addr().String(), admin: adminLn.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() {
		e.done <- RunEcho(ctx, EchoOptions{Listener: ln, AdminListener: adminLn, ResponseSize: size, PodName: pod})
	}()
	t.Cleanup(func() { e.stop(t) })
	// Ready when /healthz answers.
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := noKeepAlive.Get("http://" + e.admin + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("echo not ready: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return e
}

// noKeepAlive is a client that leaves no idle connections behind.
var noKeepAlive = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}

// stop stops the server and checks that it returned nil promptly.
func (e *testEcho) stop(t *testing.T) {
	t.Helper()
	if e.done == nil {
		return
	}
	e.cancel()
	select {
	case err := <-e.done:
		if err != nil {
			t.Errorf("RunEcho: %v", err)
		}
	case <-time.After(2 * echoShutdownGrace):
		t.Errorf("RunEcho did not return after cancel")
	}
	e.done = nil
}

func (e *testEcho) stats(t *testing.T) datapaths.EchoStats {
	t.Helper()
	resp, err := noKeepAlive.Get("http://" + e.admin + "/stats")
	if err != nil {
		t.Fatalf("GET /stats: %v", err)
	}
	defer resp.Body.Close()
	var st datapaths.EchoStats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("decode /stats: %v", err)
	}
	return st
}

func TestEcho(t *testing.T) {
	for _, tc := range []struct {
		name        string
		size        int
		requestSize int
		requests    int
	}{
		{"empty response", 0, 0, 3},
		{"64 B", 64, 64, 5},
		{"32 KiB both ways", 32 << 10, 32 << 10, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startEcho(t, tc.size, "pod-a")
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			for i := range tc.requests {
				var body io.Reader
				method := http.MethodGet
				if tc.requestSize > 0 {
					method = http.MethodPost
					body = bytes.NewReader(make([]byte, tc.requestSize))
				}
				req, _ := http.NewRequest(method, "http://"+e.addr+"/any/path", body)
				resp, err := client.Do(req)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatalf("read response %d: %v", i, err)
				}
				if resp.StatusCode != http.StatusOK || len(b) != tc.size || resp.ContentLength != int64(tc.size) {
					t.Fatalf("response %d: %s, %d bytes, Content-Length %d; want 200 and %d bytes",
						i, resp.Status, len(b), resp.ContentLength, tc.size)
				}
				if got := resp.Header.Get(PodHeader); got != "pod-a" {
					t.Errorf("%s = %q, want pod-a", PodHeader, got)
				}
			}
			want := datapaths.EchoStats{
				Requests:    int64(tc.requests),
				BytesIn:     int64(tc.requests * tc.requestSize),
				BytesOut:    int64(tc.requests * tc.size),
				Connections: 1, // keep-alive: one connection for all requests
				// Every request came from this test, over loopback.
				ByPeer: map[string]int64{"127.0.0.1": int64(tc.requests)},
			}
			// The server counts a request once its response is written,
			// which the client can have read in full first (a 32 KiB
			// body goes out unbuffered): wait for the last handler.
			got := e.stats(t)
			for deadline := time.Now().Add(2 * time.Second); !reflect.DeepEqual(got, want) && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
				got = e.stats(t)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("stats = %+v, want %+v", got, want)
			}
			resp, err := noKeepAlive.Get("http://" + e.admin + "/healthz")
			if err != nil {
				t.Fatalf("GET /healthz: %v", err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(b)) != "ok" {
				t.Errorf("/healthz = %s %q", resp.Status, b)
			}
			e.stop(t)
			if _, err := net.DialTimeout("tcp", e.addr, time.Second); err == nil {
				t.Errorf("echo still accepts connections after stop")
			}
		})
	}
}

func TestEchoNoPodHeader(t *testing.T) {
	e := startEcho(t, 1, "")
	resp, err := http.Get("http://" + e.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, ok := resp.Header[PodHeader]; ok {
		t.Errorf("%s sent without a pod name", PodHeader)
	}
}

func TestEchoListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// The port is taken: RunEcho must fail, not hang.
	err = RunEcho(context.Background(), EchoOptions{Listen: ln.Addr().String(), AdminListen: "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "listen") {
		t.Errorf("RunEcho on a taken port = %v, want a listen error", err)
	}
}
