package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Session is a control plane serving one datapath's proxies: it starts the
// server, pushes the model, waits for the proxies' ACKs, pushes endpoint
// changes and measures how long every push takes to be ACKed.
type Session struct {
	srv    *Server
	cancel context.CancelFunc
	model  Model
	ids    []string
	// Startup is the time from the first push until every proxy, started
	// after it, ACKed; Push the time from a push of a new version until
	// every running proxy ACKed (MeasurePush); EndpointPush the slowest
	// push of an endpoint change (SetPodHealth).
	Startup, Push, EndpointPush time.Duration
	pushed                      time.Time
	version                     string
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
	lat, _, err := m.srv.PushLatency(ctx, m.model, m.ids)
	if err != nil {
		return fmt.Errorf("measure push latency: %w", err)
	}
	m.Push = lat
	return nil
}

// SetPodHealth marks pod's endpoints healthy or not, pushes the change and
// returns once every proxy ACKed it.
func (m *Session) SetPodHealth(ctx context.Context, pod string, healthy bool) error {
	m.model = m.model.WithPodHealth(pod, healthy)
	lat, _, err := m.srv.PushLatency(ctx, m.model, m.ids)
	if err != nil {
		return fmt.Errorf("push endpoints of pod %s: %w", pod, err)
	}
	m.EndpointPush = max(m.EndpointPush, lat)
	return nil
}

// Metrics returns the push latencies in microseconds, for results.
func (m *Session) Metrics() map[string]float64 {
	out := map[string]float64{
		"xds_push_to_ack_us":    float64(m.Push.Microseconds()),
		"xds_startup_to_ack_us": float64(m.Startup.Microseconds()),
		"proxies":               float64(len(m.ids)),
	}
	if m.EndpointPush > 0 {
		out["xds_endpoint_push_to_ack_us"] = float64(m.EndpointPush.Microseconds())
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
