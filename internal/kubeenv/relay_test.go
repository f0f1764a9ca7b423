package kubeenv

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
)

// TestConnectRelay checks the API server's egress proxy: it tunnels to
// addresses in 198.18.0.0/15 only.
func TestConnectRelay(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	var (
		mu     sync.Mutex
		dialed []string
	)
	sock := filepath.Join(t.TempDir(), "egress.sock")
	r, err := newConnectRelay(sock, func(ctx context.Context, addr string) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, addr)
		mu.Unlock()
		var d net.Dialer
		return d.DialContext(ctx, "tcp", echo.Addr().String())
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	for _, tc := range []struct {
		target string
		status int
	}{
		{"198.19.1.1:10250", http.StatusOK},
		{"198.18.128.7:8080", http.StatusOK},
		{"10.0.0.1:10250", http.StatusForbidden},
		{"8.8.8.8:53", http.StatusForbidden},
		{"node-0:10250", http.StatusForbidden},
	} {
		t.Run(tc.target, func(t *testing.T) {
			c, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\nping", tc.target, tc.target)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status != http.StatusOK {
				return
			}
			buf := make([]byte, 4)
			if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "ping" {
				t.Errorf("tunnel echoed %q, %v; want the bytes sent with the request", buf, err)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if len(dialed) != 2 {
		t.Errorf("dialed %v, want only the two targets in range", dialed)
	}
}
