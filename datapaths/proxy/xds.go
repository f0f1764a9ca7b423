package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// xDS type URLs.
const (
	typeListener = "type.googleapis.com/envoy.config.listener.v3.Listener"
	typeRoute    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	typeCluster  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	typeEndpoint = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
)

var typeNames = map[string]string{typeListener: "listeners", typeRoute: "routes", typeCluster: "clusters", typeEndpoint: "endpoints"}

// typeState is the client's state of one resource type.
type typeState struct {
	url      string
	version  string // last accepted
	nonce    string // last received
	names    []string
	wildcard bool
	sent     bool // a request was sent on the current stream
	res      map[string]proto.Message
}

// xdsSink is what an xDS client configures: the builtin engine's
// clusters and listeners, or an haproxy.
type xdsSink interface {
	// commit makes c, the compiled form of every accepted resource after a
	// response of type url, the running configuration. changedClusters and
	// changedAssignments name what that response changed; raw holds every
	// type's accepted resources with the response's; version is the
	// response's. It returns an error (the response is NACKed and c is
	// dropped) when the configuration cannot run.
	commit(c *compiledSet, url string, changedClusters, changedAssignments map[string]bool, raw map[string]map[string]proto.Message, version string) error
}

// xdsConfig is an xDS client's connection and its callbacks.
type xdsConfig struct {
	socket, nodeID, cluster string
	// connectTimeout bounds the wait for a first full configuration.
	connectTimeout time.Duration
	log            *slog.Logger
	sink           xdsSink
	// ready is called after every response ACKed once the configuration
	// is complete (the first full configuration, and every one after it:
	// it must be idempotent); isReady says whether it was called; fail is
	// called once when no full configuration came within connectTimeout.
	ready   func()
	isReady func() bool
	fail    func(error)
}

type xdsClient struct {
	cfg      xdsConfig
	types    map[string]*typeState
	compiled compiledSet
}

// runXDS runs an xDS client until ctx ends: it keeps a stream to the
// control plane open (reconnecting with backoff), commits every response
// it accepts to cfg.sink, and ACKs or NACKs it.
func runXDS(ctx context.Context, cfg xdsConfig) {
	x := &xdsClient{cfg: cfg, types: map[string]*typeState{
		typeListener: {url: typeListener, wildcard: true, res: map[string]proto.Message{}},
		typeCluster:  {url: typeCluster, wildcard: true, res: map[string]proto.Message{}},
		typeEndpoint: {url: typeEndpoint, res: map[string]proto.Message{}},
		typeRoute:    {url: typeRoute, res: map[string]proto.Message{}},
	}}
	conn, err := grpc.NewClient("unix://"+cfg.socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	if err != nil {
		cfg.fail(fmt.Errorf("%w at %s: %v", ErrControlPlaneUnreachable, cfg.socket, err))
		return
	}
	defer conn.Close()
	client := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	var lastErr error = errors.New("no configuration received")
	timer := time.NewTimer(cfg.connectTimeout)
	defer timer.Stop()
	failed := false
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		errc := make(chan error, 1)
		sctx, cancel := context.WithCancel(ctx)
		go func() { errc <- x.stream(sctx, client) }()
		var err error
	wait:
		for {
			select {
			case err = <-errc:
				break wait
			case <-timer.C:
				if !cfg.isReady() && !failed {
					failed = true
					cfg.fail(fmt.Errorf("%w at %s: %v", ErrControlPlaneUnreachable, cfg.socket, lastErr))
				}
			}
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			lastErr = err
			cfg.log.Debug("xds stream ended", "err", err)
		}
		if cfg.isReady() {
			backoff = 50 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		case <-timer.C:
			if !cfg.isReady() && !failed {
				failed = true
				cfg.fail(fmt.Errorf("%w at %s: %v", ErrControlPlaneUnreachable, cfg.socket, lastErr))
			}
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

func (x *xdsClient) node() *corev3.Node {
	return &corev3.Node{Id: x.cfg.nodeID, Cluster: x.cfg.cluster, UserAgentName: "meshbench-proxy"}
}

func (x *xdsClient) stream(ctx context.Context, client discoveryv3.AggregatedDiscoveryServiceClient) error {
	s, err := client.StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	for _, ts := range x.types {
		ts.nonce, ts.sent = "", false
	}
	send := func(ts *typeState, detail error) error {
		req := &discoveryv3.DiscoveryRequest{
			Node: x.node(), TypeUrl: ts.url, VersionInfo: ts.version,
			ResponseNonce: ts.nonce, ResourceNames: ts.names,
		}
		if detail != nil {
			req.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: detail.Error()}
		}
		ts.sent = true
		return s.Send(req)
	}
	for _, url := range []string{typeCluster, typeListener, typeEndpoint, typeRoute} {
		ts := x.types[url]
		if ts.wildcard || len(ts.names) > 0 {
			if err := send(ts, nil); err != nil {
				return err
			}
		}
	}
	for {
		resp, err := s.Recv()
		if err != nil {
			return err
		}
		ts, ok := x.types[resp.GetTypeUrl()]
		if !ok {
			continue
		}
		ts.nonce = resp.GetNonce()
		res, err := decode(resp)
		if err == nil {
			err = x.apply(ts, res, resp.GetVersionInfo())
		}
		if err != nil {
			x.cfg.log.Warn("rejecting configuration", "type", typeNames[ts.url], "version", resp.GetVersionInfo(), "err", err)
			if err := send(ts, err); err != nil {
				return err
			}
			continue
		}
		ts.version, ts.res = resp.GetVersionInfo(), res
		if err := send(ts, nil); err != nil {
			return err
		}
		// Follow the references: clusters name endpoints, listeners name
		// route configurations.
		var follow *typeState
		var names []string
		switch ts.url {
		case typeCluster:
			follow, names = x.types[typeEndpoint], edsNames(res)
		case typeListener:
			follow, names = x.types[typeRoute], rdsNames(x.compiled.listeners)
		}
		if follow != nil && (!slices.Equal(follow.names, names) || !follow.sent && len(names) > 0) {
			follow.names = names
			if err := send(follow, nil); err != nil {
				return err
			}
		}
		if x.complete() {
			x.cfg.ready()
		}
	}
}

// complete says whether every type has been received and every reference
// resolved: the first full configuration.
func (x *xdsClient) complete() bool {
	if x.types[typeListener].version == "" || x.types[typeCluster].version == "" {
		return false
	}
	for _, n := range x.types[typeEndpoint].names {
		if _, ok := x.types[typeEndpoint].res[n]; !ok {
			return false
		}
	}
	for _, n := range x.types[typeRoute].names {
		if _, ok := x.types[typeRoute].res[n]; !ok {
			return false
		}
	}
	return true
}

func decode(resp *discoveryv3.DiscoveryResponse) (map[string]proto.Message, error) {
	out := map[string]proto.Message{}
	for _, a := range resp.GetResources() {
		if a.GetTypeUrl() != resp.GetTypeUrl() {
			return nil, fmt.Errorf("resource of type %s in a %s response", a.GetTypeUrl(), resp.GetTypeUrl())
		}
		m, err := a.UnmarshalNew()
		if err != nil {
			return nil, fmt.Errorf("decode %s: %w", a.GetTypeUrl(), err)
		}
		if v, ok := m.(interface{ ValidateAll() error }); ok {
			if err := v.ValidateAll(); err != nil {
				return nil, err
			}
		}
		var name string
		switch r := m.(type) {
		case *listenerv3.Listener:
			name = r.GetName()
		case *clusterv3.Cluster:
			name = r.GetName()
		case *endpointv3.ClusterLoadAssignment:
			name = r.GetClusterName()
		case *routev3.RouteConfiguration:
			name = r.GetName()
		}
		out[name] = m
	}
	return out, nil
}

func edsNames(res map[string]proto.Message) []string {
	var names []string
	for _, m := range res {
		c := m.(*clusterv3.Cluster)
		if c.GetType() == clusterv3.Cluster_EDS {
			n := c.GetEdsClusterConfig().GetServiceName()
			if n == "" {
				n = c.GetName()
			}
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

func rdsNames(listeners map[string]*listenerCfg) []string {
	set := map[string]bool{}
	for _, lc := range listeners {
		for _, c := range append(slices.Clone(lc.chains), lc.def) {
			if c != nil && c.http != nil && c.http.rds != "" {
				set[c.http.rds] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// compiledSet is the compiled form of the accepted resources.
type compiledSet struct {
	clusters    map[string]*clusterCfg
	assignments map[string][]endpoint
	listeners   map[string]*listenerCfg
	routes      map[string]*routeCfg
}

// compileType compiles the resources of one response, reusing the compiled
// form of those equal to the accepted ones.
func compileType[T any](old map[string]proto.Message, prev map[string]T, res map[string]proto.Message, compile func(proto.Message) (T, error)) (map[string]T, map[string]bool, error) {
	out := make(map[string]T, len(res))
	changed := map[string]bool{}
	for name, m := range res {
		if o, ok := old[name]; ok && proto.Equal(o, m) {
			if c, ok := prev[name]; ok {
				out[name] = c
				continue
			}
		}
		c, err := compile(m)
		if err != nil {
			return nil, nil, err
		}
		out[name] = c
		changed[name] = true
	}
	for name := range prev {
		if _, ok := res[name]; !ok {
			changed[name] = true
		}
	}
	return out, changed, nil
}

// apply compiles a response's resources and, when they compile, makes them
// part of the running configuration. Nothing changes on error.
func (x *xdsClient) apply(ts *typeState, res map[string]proto.Message, version string) error {
	c := &x.compiled
	next := *c
	var changedClusters, changedAssignments map[string]bool
	var err error
	switch ts.url {
	case typeCluster:
		next.clusters, changedClusters, err = compileType(ts.res, c.clusters, res, func(m proto.Message) (*clusterCfg, error) {
			return compileCluster(m.(*clusterv3.Cluster))
		})
	case typeEndpoint:
		next.assignments, changedAssignments, err = compileType(ts.res, c.assignments, res, func(m proto.Message) ([]endpoint, error) {
			eps, err := compileAssignment(m.(*endpointv3.ClusterLoadAssignment))
			if err != nil {
				return nil, fmt.Errorf("endpoints of %s: %w", m.(*endpointv3.ClusterLoadAssignment).GetClusterName(), err)
			}
			return eps, nil
		})
	case typeListener:
		next.listeners, _, err = compileType(ts.res, c.listeners, res, func(m proto.Message) (*listenerCfg, error) {
			return compileListener(m.(*listenerv3.Listener))
		})
	case typeRoute:
		next.routes, _, err = compileType(ts.res, c.routes, res, func(m proto.Message) (*routeCfg, error) {
			return compileRoutes(m.(*routev3.RouteConfiguration))
		})
	}
	if err != nil {
		return err
	}
	raw := map[string]map[string]proto.Message{}
	for url, t := range x.types {
		raw[url] = t.res
	}
	raw[ts.url] = res
	if err := x.cfg.sink.commit(&next, ts.url, changedClusters, changedAssignments, raw, version); err != nil {
		return err
	}
	*c = next
	return nil
}

// commit implements xdsSink: the clusters whose configuration or
// endpoints changed are updated in place (their counters and connections
// stay), and the listeners and routes are swapped in.
func (p *Builtin) commit(c *compiledSet, url string, changedClusters, changedAssignments map[string]bool, raw map[string]map[string]proto.Message, version string) error {
	// Commit the clusters whose configuration or endpoints changed.
	p.cmu.Lock()
	for name, cfg := range c.clusters {
		rc, exists := p.clusters[name]
		if exists && !changedClusters[name] && !(cfg.eds && changedAssignments[cfg.edsName]) {
			continue
		}
		eps := cfg.static
		if cfg.eds {
			var ok bool
			if eps, ok = c.assignments[cfg.edsName]; !ok && exists {
				eps = rc.endpoints() // keep the running endpoints until EDS answers
			}
		}
		if !exists {
			rc = newCluster(name, p.reg.cluster(name), func(a netip.AddrPort) *HostCounters { return p.reg.host(name, a) })
			p.clusters[name] = rc
		}
		rc.update(cfg, eps)
	}
	var gone []*cluster
	for name, rc := range p.clusters {
		if _, ok := c.clusters[name]; !ok {
			gone = append(gone, rc)
			delete(p.clusters, name)
		}
	}
	p.cmu.Unlock()
	for _, rc := range gone {
		rc.close()
	}

	old := p.state.Load()
	versions := map[string]string{}
	if old != nil {
		for k, v := range old.version {
			versions[k] = v
		}
	}
	versions[typeNames[url]] = version
	p.state.Store(&state{version: versions, listeners: c.listeners, routes: c.routes, raw: raw})
	p.log.Debug("configuration applied", "type", typeNames[url], "version", version)
	return nil
}

// endpoints returns the cluster's current endpoints.
func (c *cluster) endpoints() []endpoint {
	c.mu.Lock()
	defer c.mu.Unlock()
	healthy := map[netip.AddrPort]bool{}
	for _, h := range c.picker.Load().hosts {
		healthy[h.addr] = true
	}
	out := make([]endpoint, 0, len(c.hosts))
	for a, h := range c.hosts {
		out = append(out, endpoint{addr: a, hostname: h.hostname, healthy: healthy[a]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].addr.Compare(out[j].addr) < 0 })
	return out
}
