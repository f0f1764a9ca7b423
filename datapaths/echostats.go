package datapaths

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/meshbench/meshbench/internal/ports"

	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/internal/nsutil"
)

// EchoStats is what an echo server's /stats reports.
type EchoStats struct {
	Requests    int64 `json:"requests"`
	BytesIn     int64 `json:"bytes_in"`
	BytesOut    int64 `json:"bytes_out"`
	Connections int64 `json:"connections"`
	// ByPeer counts requests by the address of the peer that sent them
	// ("127.0.0.1" for a sidecar in the pod, the client pod's address for
	// no mesh, a node proxy's address for a node proxy): it shows which
	// hop delivered the requests.
	ByPeer map[string]int64 `json:"by_peer,omitempty"`
}

// ReadEchoStats reads the counters of the echo server in pod, over the pod's
// loopback.
func ReadEchoStats(ctx context.Context, pod *testbed.Pod) (EchoStats, error) {
	var st EchoStats
	if err := getJSON(ctx, pod.Netns(), net.JoinHostPort("127.0.0.1", strconv.Itoa(ports.EchoAdmin)), "/stats", &st); err != nil {
		return st, fmt.Errorf("read echo stats of pod %s: %w", pod.Name, err)
	}
	return st, nil
}

// getJSON fetches http://addr/path from inside ns and decodes the JSON
// answer into v.
func getJSON(ctx context.Context, ns nsutil.Netns, addr, path string, v any) error {
	body, err := Get(ctx, ns, addr, path)
	if err != nil {
		return err
	}
	return json.Unmarshal(body, v)
}

// Get fetches http://addr/path from inside ns and returns the body of a
// 200 answer.
func Get(ctx context.Context, ns nsutil.Netns, addr, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	tr := &http.Transport{DialContext: ns.DialContext(), DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return body, nil
}

// GetJSON fetches http://addr/path from inside ns and decodes the JSON
// answer into v. Datapaths use it to read proxy admin endpoints on a pod's
// or node's loopback.
func GetJSON(ctx context.Context, ns nsutil.Netns, addr, path string, v any) error {
	return getJSON(ctx, ns, addr, path, v)
}

// WaitEcho waits until the echo server in every pod answers /stats, or ctx
// ends. It returns the last error of each pod that never answered.
func WaitEcho(ctx context.Context, pods []*testbed.Pod) error {
	errs, _ := ReadAll(ctx, pods, func(ctx context.Context, p *testbed.Pod) (error, error) {
		for {
			_, err := ReadEchoStats(ctx, p)
			if err == nil {
				return nil, nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("echo in pod %s not ready: %w", p.Name, err), nil
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	return errors.Join(errs...)
}

// WithinTolerance reports whether served accounts for successes: served may
// exceed successes by requests still in flight when a window closed, and
// fall short only by the same margin.
func WithinTolerance(served, successes int64) bool {
	margin := successes/20 + 10
	return served >= successes-margin && served <= successes+margin
}
