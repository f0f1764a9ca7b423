package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
)

// Options configure a Server.
type Options struct {
	// SocketPath is the unix socket the server listens on. It is the only
	// address the server listens on: never a routable one.
	SocketPath string
	Logger     *slog.Logger
}

// ErrNACK is returned (wrapped, with the proxy's error detail) by WaitAcked
// when a proxy rejected the version waited for.
var ErrNACK = errors.New("configuration rejected")

// Server is an xDS server (ADS, state of the world, snapshot cache) for
// every proxy of a run.
type Server struct {
	opts  Options
	log   *slog.Logger
	cache cachev3.SnapshotCache

	// setMu serializes SetModel and the first snapshot of new nodes.
	setMu   sync.Mutex
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every ACK/NACK/stream change
	model   *Model
	version string
	seq     int
	// nodes is every node id that has a snapshot, with the types its
	// current snapshot holds resources of.
	nodes   map[string]map[string]bool
	streams map[int64]*streamState
	acked   map[string]map[string]string // node → type URL → version ACKed
	nacks   map[string]map[string]nack   // node → version → NACK

	grpc     *grpc.Server
	listener net.Listener
	done     chan struct{}
	serveErr error
}

type streamState struct {
	node   string
	nonces map[string]string // nonce → version sent
}

type nack struct {
	typeURL string
	detail  string
}

// New returns a server; Start starts it.
func New(opts Options) *Server {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:    opts,
		log:     log,
		changed: make(chan struct{}),
		nodes:   map[string]map[string]bool{},
		streams: map[int64]*streamState{},
		acked:   map[string]map[string]string{},
		nacks:   map[string]map[string]nack{},
		done:    make(chan struct{}),
	}
	s.cache = cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	return s
}

// SocketPath is the unix socket the server listens on.
func (s *Server) SocketPath() string { return s.opts.SocketPath }

// Start listens on the unix socket (replacing a stale socket file) and
// serves ADS until ctx ends or Stop is called.
func (s *Server) Start(ctx context.Context) error {
	if s.opts.SocketPath == "" {
		return errors.New("start xds server: no socket path")
	}
	if err := os.MkdirAll(filepath.Dir(s.opts.SocketPath), 0o755); err != nil {
		return fmt.Errorf("start xds server: %w", err)
	}
	if err := os.Remove(s.opts.SocketPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("start xds server: remove stale socket: %w", err)
	}
	l, err := net.Listen("unix", s.opts.SocketPath)
	if err != nil {
		return fmt.Errorf("start xds server: %w", err)
	}
	// Every pod's proxy runs as uid 1337 in its own netns but shares the
	// file system: let it connect.
	if err := os.Chmod(s.opts.SocketPath, 0o777); err != nil {
		l.Close()
		return fmt.Errorf("start xds server: %w", err)
	}
	s.listener = l
	xds := serverv3.NewServer(ctx, s.cache, s.callbacks())
	s.grpc = grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(s.grpc, xds)
	go func() {
		err := s.grpc.Serve(l)
		s.mu.Lock()
		s.serveErr = err
		s.mu.Unlock()
		close(s.done)
	}()
	go func() {
		select {
		case <-ctx.Done():
			s.Stop()
		case <-s.done:
		}
	}()
	s.log.Info("xds server listening", "socket", s.opts.SocketPath)
	return nil
}

// Stop stops serving, closes every stream and removes the socket. It is
// safe to call more than once.
func (s *Server) Stop() {
	if s.grpc == nil {
		return
	}
	s.grpc.Stop()
	<-s.done
	_ = os.Remove(s.opts.SocketPath)
}

// Version is the version of the last model set.
func (s *Server) Version() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version
}

// SetModel builds a snapshot of the model for every known node (the
// model's Proxies and every node that has connected), validates them and
// pushes them. It returns the new version; the proxies have it once
// WaitAcked returns.
func (s *Server) SetModel(ctx context.Context, m Model) (string, error) {
	if err := m.Validate(); err != nil {
		return "", fmt.Errorf("set model: %w", err)
	}
	s.setMu.Lock()
	defer s.setMu.Unlock()
	s.mu.Lock()
	s.seq++
	version := "v" + strconv.Itoa(s.seq)
	ids := map[string]bool{}
	for id := range s.nodes {
		ids[id] = true
	}
	for _, id := range m.Proxies {
		ids[id] = true
	}
	s.mu.Unlock()

	snaps := map[string]*cachev3.Snapshot{}
	for id := range ids {
		snap, err := Snapshot(&m, id, version)
		if err != nil {
			return "", fmt.Errorf("set model: %w", err)
		}
		snaps[id] = snap
	}
	s.mu.Lock()
	s.model = &m
	s.version = version
	for id, snap := range snaps {
		s.nodes[id] = snapshotTypes(snap)
	}
	s.mu.Unlock()
	var errs []error
	for id, snap := range snaps {
		if err := s.cache.SetSnapshot(ctx, id, snap); err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", id, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return version, fmt.Errorf("set model: %w", err)
	}
	s.log.Debug("model set", "version", version, "nodes", len(snaps))
	return version, nil
}

func snapshotTypes(snap *cachev3.Snapshot) map[string]bool {
	types := map[string]bool{resource.ListenerType: true, resource.ClusterType: true}
	for _, t := range []string{resource.EndpointType, resource.RouteType} {
		if len(snap.GetResources(t)) > 0 {
			types[t] = true
		}
	}
	return types
}

// ensureNode gives a node that connected before the model named it a
// snapshot of the current model, or remembers it for the next SetModel.
func (s *Server) ensureNode(id string) {
	s.setMu.Lock()
	defer s.setMu.Unlock()
	s.mu.Lock()
	_, known := s.nodes[id]
	m, version := s.model, s.version
	if known {
		s.mu.Unlock()
		return
	}
	s.nodes[id] = map[string]bool{resource.ListenerType: true, resource.ClusterType: true}
	s.mu.Unlock()
	if m == nil {
		return
	}
	snap, err := Snapshot(m, id, version)
	if err != nil {
		s.log.Error("snapshot for new node", "node", id, "err", err)
		return
	}
	s.mu.Lock()
	s.nodes[id] = snapshotTypes(snap)
	s.mu.Unlock()
	if err := s.cache.SetSnapshot(context.Background(), id, snap); err != nil {
		s.log.Error("set snapshot for new node", "node", id, "err", err)
	}
}

// Nodes returns the ids of the nodes that have an open stream.
func (s *Server) Nodes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for _, st := range s.streams {
		if st.node != "" && !seen[st.node] {
			seen[st.node] = true
			out = append(out, st.node)
		}
	}
	sort.Strings(out)
	return out
}

func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) callbacks() serverv3.Callbacks {
	return serverv3.CallbackFuncs{
		StreamOpenFunc: func(_ context.Context, id int64, _ string) error {
			s.mu.Lock()
			s.streams[id] = &streamState{nonces: map[string]string{}}
			s.mu.Unlock()
			return nil
		},
		StreamClosedFunc: func(id int64, _ *corev3.Node) {
			s.mu.Lock()
			if st := s.streams[id]; st != nil && st.node != "" {
				// A proxy that is gone has ACKed nothing: when it comes back
				// it must ACK again.
				open := false
				for oid, o := range s.streams {
					if oid != id && o.node == st.node {
						open = true
					}
				}
				if !open {
					delete(s.acked, st.node)
				}
			}
			delete(s.streams, id)
			s.notify()
			s.mu.Unlock()
		},
		StreamRequestFunc: func(id int64, req *discoveryv3.DiscoveryRequest) error {
			node := req.GetNode().GetId()
			if node == "" {
				return errors.New("discovery request without node id")
			}
			s.mu.Lock()
			st := s.streams[id]
			if st == nil {
				st = &streamState{nonces: map[string]string{}}
				s.streams[id] = st
			}
			first := st.node == ""
			st.node = node
			if nonce := req.GetResponseNonce(); nonce != "" {
				sent, ok := st.nonces[nonce]
				delete(st.nonces, nonce)
				switch {
				case !ok:
				case req.GetErrorDetail() != nil:
					if s.nacks[node] == nil {
						s.nacks[node] = map[string]nack{}
					}
					s.nacks[node][sent] = nack{typeURL: req.GetTypeUrl(), detail: req.GetErrorDetail().GetMessage()}
					s.log.Warn("nack", "node", node, "type", req.GetTypeUrl(), "version", sent, "detail", req.GetErrorDetail().GetMessage())
				case req.GetVersionInfo() == sent:
					if s.acked[node] == nil {
						s.acked[node] = map[string]string{}
					}
					s.acked[node][req.GetTypeUrl()] = sent
				}
				s.notify()
			}
			s.mu.Unlock()
			if first {
				// Not inline: SetSnapshot may wait for this stream.
				go s.ensureNode(node)
			}
			return nil
		},
		StreamResponseFunc: func(_ context.Context, id int64, _ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
			s.mu.Lock()
			if st := s.streams[id]; st != nil {
				st.nonces[resp.GetNonce()] = resp.GetVersionInfo()
			}
			s.mu.Unlock()
		},
	}
}

// WaitAcked returns when every listed node has ACKed version for every
// resource type of its snapshot. It returns an error wrapping ErrNACK, with
// the proxy's detail, when one of them rejected that version, and ctx's
// error (with what is still missing) when ctx ends first.
func (s *Server) WaitAcked(ctx context.Context, version string, nodeIDs []string) error {
	_, err := s.ackTimes(ctx, version, nodeIDs, time.Now())
	return err
}

// ackTimes waits until every node in nodeIDs ACKed every resource type at
// version, or one NACKed it, or ctx ends; it returns, in nodeIDs' order,
// the time from start at which each was seen to have ACKed.
func (s *Server) ackTimes(ctx context.Context, version string, nodeIDs []string, start time.Time) ([]time.Duration, error) {
	times := make([]time.Duration, len(nodeIDs))
	done := make([]bool, len(nodeIDs))
	for {
		s.mu.Lock()
		missing, err := s.pendingLocked(version, nodeIDs)
		ch := s.changed
		s.mu.Unlock()
		if err != nil {
			return nil, err
		}
		pending := map[string]bool{}
		for _, m := range missing {
			id, _, _ := strings.Cut(m, " ")
			pending[id] = true
		}
		now := time.Since(start)
		for i, id := range nodeIDs {
			if !done[i] && !pending[id] {
				done[i], times[i] = true, now
			}
		}
		if len(missing) == 0 {
			return times, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for ack of %s: %w (missing: %v)", version, ctx.Err(), missing)
		}
	}
}

func (s *Server) pendingLocked(version string, nodeIDs []string) ([]string, error) {
	var missing []string
	for _, id := range nodeIDs {
		if n, ok := s.nacks[id][version]; ok {
			return nil, fmt.Errorf("node %s %s version %s: %w: %s", id, n.typeURL, version, ErrNACK, n.detail)
		}
		types, ok := s.nodes[id]
		if !ok {
			missing = append(missing, id+" (no snapshot)")
			continue
		}
		for t := range types {
			if s.acked[id][t] != version {
				missing = append(missing, id+" "+t)
			}
		}
	}
	sort.Strings(missing)
	return missing, nil
}

// PushLatency sets the model and measures the time until every listed
// proxy has ACKed it: the control plane's config-push latency.
func (s *Server) PushLatency(ctx context.Context, m Model, nodeIDs []string) (time.Duration, string, error) {
	lats, version, err := s.PushLatencies(ctx, m, nodeIDs)
	if err != nil {
		return 0, version, err
	}
	return slices.Max(append(lats, 0)), version, nil
}

// PushLatencies is PushLatency with each proxy's own time from the push
// to its ACK of every resource type, in nodeIDs' order: the spread over
// proxies, not only the slowest.
func (s *Server) PushLatencies(ctx context.Context, m Model, nodeIDs []string) ([]time.Duration, string, error) {
	start := time.Now()
	version, err := s.SetModel(ctx, m)
	if err != nil {
		return nil, version, err
	}
	lats, err := s.ackTimes(ctx, version, nodeIDs, start)
	return lats, version, err
}
