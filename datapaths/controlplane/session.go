package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Session is a control plane serving one datapath's proxies: it starts the
// server, pushes the model, waits for the proxies' ACKs, pushes endpoint
// changes and measures how long every push takes to be ACKed.
type Session struct {
	srv    *Server
	cancel context.CancelFunc
	// mu serializes pushes: one model change is pushed and ACKed before
	// the next is made (a readiness change and a replaced pod's new
	// address can come at once).
	mu    sync.Mutex
	model Model
	// ids are the node ids whose ACKs pushes wait for; gone are those
	// left out while their proxy is gone with its pod.
	ids  []string
	gone map[string]bool
	// Startup is the time from the first push until every proxy, started
	// after it, ACKed; Push the time from a push of a new version until
	// every running proxy ACKed (MeasurePush); EndpointPush the slowest
	// push of an endpoint change (SetPodHealth).
	Startup, Push, EndpointPush time.Duration
	// PushSpread is each running proxy's own time to ACK the push
	// MeasurePush timed, in the order of ids.
	PushSpread []time.Duration
	pushed     time.Time
	version    string
}

// StartSession starts a control plane on socket and pushes m, whose Proxies
// are the node ids expected to connect. Stop it with Stop.
func StartSession(ctx context.Context, socket string, m Model, log *slog.Logger) (*Session, error) {
	srv := New(Options{SocketPath: socket, Logger: log})
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	if err := srv.Start(sctx); err != nil {
		cancel()
		return nil, fmt.Errorf("start control plane: %w", err)
	}
	s := &Session{srv: srv, cancel: cancel, model: m, ids: m.Proxies, pushed: time.Now()}
	v, err := srv.SetModel(ctx, m)
	if err != nil {
		s.Stop()
		return nil, fmt.Errorf("push mesh configuration: %w", err)
	}
	s.version = v
	return s, nil
}

// WaitAcked waits until every expected proxy has ACKed the first push, and
// records Startup.
func (m *Session) WaitAcked(ctx context.Context) error {
	if err := m.srv.WaitAcked(ctx, m.version, m.ids); err != nil {
		return err
	}
	m.Startup = time.Since(m.pushed)
	return nil
}

// MeasurePush pushes the model again as a new version and records how long
// the running proxies take to ACK it (Push).
func (m *Session) MeasurePush(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	lats, _, err := m.srv.PushLatencies(ctx, m.model, m.waited())
	if err != nil {
		return fmt.Errorf("measure push latency: %w", err)
	}
	m.Push, m.PushSpread = slices.Max(append(lats, 0)), lats
	return nil
}

// SetPodHealth marks pod's endpoints healthy or not, pushes the change and
// returns once every proxy ACKed it.
func (m *Session) SetPodHealth(ctx context.Context, pod string, healthy bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.model = m.model.WithPodHealth(pod, healthy)
	lat, _, err := m.srv.PushLatency(ctx, m.model, m.waited())
	if err != nil {
		return fmt.Errorf("push endpoints of pod %s: %w", pod, err)
	}
	m.EndpointPush = max(m.EndpointPush, lat)
	return nil
}

// SetPodAddress gives pod's endpoints a new address (its replacement's,
// after a pod delete), health unchanged, pushes the change and returns
// once every proxy ACKed it.
func (m *Session) SetPodAddress(ctx context.Context, pod string, ip netip.Addr) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.model = m.model.WithPodAddress(pod, ip)
	if _, _, err := m.srv.PushLatency(ctx, m.model, m.waited()); err != nil {
		return fmt.Errorf("push the new address %s of pod %s: %w", ip, pod, err)
	}
	return nil
}

// Leave stops waiting for the ACKs of node id: its proxy is gone with its
// pod (deleted), and pushes until it is back must not wait for it.
func (m *Session) Leave(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gone == nil {
		m.gone = map[string]bool{}
	}
	m.gone[id] = true
}

// Rejoin waits until node id's proxy, started again, has ACKed the
// current configuration; pushes wait for it again from then on.
func (m *Session) Rejoin(ctx context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.srv.WaitAcked(ctx, m.srv.Version(), []string{id}); err != nil {
		return err
	}
	delete(m.gone, id)
	return nil
}

// waited returns the node ids pushes wait for. m.mu is held.
func (m *Session) waited() []string {
	out := make([]string, 0, len(m.ids))
	for _, id := range m.ids {
		if !m.gone[id] {
			out = append(out, id)
		}
	}
	return out
}

// Metrics returns the push latencies in microseconds, for results.
func (m *Session) Metrics() map[string]float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]float64{
		"xds_push_to_ack_us":    float64(m.Push.Microseconds()),
		"xds_startup_to_ack_us": float64(m.Startup.Microseconds()),
		"proxies":               float64(len(m.ids)),
	}
	if m.EndpointPush > 0 {
		out["xds_endpoint_push_to_ack_us"] = float64(m.EndpointPush.Microseconds())
	}
	if len(m.PushSpread) > 0 {
		// The spread over proxies of the same push (its maximum is
		// xds_push_to_ack_us).
		sorted := slices.Sorted(slices.Values(m.PushSpread))
		out["xds_push_to_ack_p50_us"] = float64(quantile(sorted, 0.50).Microseconds())
		out["xds_push_to_ack_p99_us"] = float64(quantile(sorted, 0.99).Microseconds())
	}
	return out
}

// Stop stops the server; safe on a nil Session and more than once.
func (m *Session) Stop() {
	if m == nil || m.srv == nil {
		return
	}
	m.srv.Stop()
	m.cancel()
	m.srv = nil
}

// ErrNotRunning is returned by a datapath's mesh operations before install.
var ErrNotRunning = errors.New("control plane not running")

// quantile returns the q-quantile of sorted (nearest rank); 0 when empty.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}
