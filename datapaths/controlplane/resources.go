package controlplane

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	origdstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Resources derives the xDS resources of one proxy from the model. nodeID
// selects the proxy's view: a sidecar ("sidecar~<pod>") gets inbound filter
// chains only for the ports its pod serves; other proxies get them for every
// service port.
func Resources(m *Model, nodeID string) (map[resource.Type][]types.Resource, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("invalid model: %w", err)
	}
	b := builder{m: m, nodeID: nodeID}
	return b.build()
}

// Snapshot derives, validates and checks the consistency of one proxy's
// snapshot at version.
func Snapshot(m *Model, nodeID, version string) (*cachev3.Snapshot, error) {
	res, err := Resources(m, nodeID)
	if err != nil {
		return nil, err
	}
	snap, err := cachev3.NewSnapshot(version, res)
	if err != nil {
		return nil, fmt.Errorf("snapshot for %s: %w", nodeID, err)
	}
	if err := ValidateSnapshot(snap); err != nil {
		return nil, fmt.Errorf("snapshot for %s: %w", nodeID, err)
	}
	return snap, nil
}

// ValidateSnapshot checks a snapshot's consistency and validates every
// resource, including the typed filter configurations inside listeners.
func ValidateSnapshot(snap *cachev3.Snapshot) error {
	if err := snap.Consistent(); err != nil {
		return fmt.Errorf("inconsistent: %w", err)
	}
	for _, typ := range []resource.Type{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType} {
		for name, r := range snap.GetResources(typ) {
			if err := validateResource(r); err != nil {
				return fmt.Errorf("%s %q: %w", typ, name, err)
			}
		}
	}
	return nil
}

type validator interface{ ValidateAll() error }

func validateResource(r proto.Message) error {
	if v, ok := r.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			return err
		}
	}
	l, ok := r.(*listenerv3.Listener)
	if !ok {
		return nil
	}
	chains := slices.Clone(l.GetFilterChains())
	if l.GetDefaultFilterChain() != nil {
		chains = append(chains, l.GetDefaultFilterChain())
	}
	var anys []*anypb.Any
	for _, lf := range l.GetListenerFilters() {
		anys = append(anys, lf.GetTypedConfig())
	}
	for _, fc := range chains {
		for _, f := range fc.GetFilters() {
			anys = append(anys, f.GetTypedConfig())
		}
	}
	for _, a := range anys {
		msg, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("unpack %s: %w", a.GetTypeUrl(), err)
		}
		if v, ok := msg.(validator); ok {
			if err := v.ValidateAll(); err != nil {
				return fmt.Errorf("%s: %w", a.GetTypeUrl(), err)
			}
		}
		if h, ok := msg.(*hcmv3.HttpConnectionManager); ok {
			for _, hf := range h.GetHttpFilters() {
				if _, err := hf.GetTypedConfig().UnmarshalNew(); err != nil {
					return fmt.Errorf("unpack http filter %s: %w", hf.GetName(), err)
				}
			}
		}
	}
	return nil
}

type builder struct {
	m      *Model
	nodeID string
}

// dest is a destination an outbound filter chain matches.
type dest struct {
	ip   netip.Addr
	port int
}

// build returns the proxy's resources: a cluster and endpoints per
// service, the outbound listener with its routes, and the inbound listener
// with its clusters.
func (b *builder) build() (map[resource.Type][]types.Resource, error) {
	services := slices.Clone(b.m.Services)
	sort.SliceStable(services, func(i, j int) bool {
		if services[i].Name != services[j].Name {
			return services[i].Name < services[j].Name
		}
		return services[i].Port < services[j].Port
	})
	var clusters, endpoints []types.Resource
	for i := range services {
		s := &services[i]
		clusters = append(clusters, b.cluster(s))
		endpoints = append(endpoints, loadAssignment(ClusterName(s.Name, s.Port), s.Endpoints))
	}
	clusters = append(clusters, passthroughCluster(PassthroughCluster), passthroughCluster(InboundPassthroughCluster))
	outbound, routes := outboundListener(destinations(services))
	inbound, inClusters := b.inboundListener(services)
	return map[resource.Type][]types.Resource{
		resource.ClusterType:  append(clusters, inClusters...),
		resource.EndpointType: endpoints,
		resource.ListenerType: {outbound, inbound},
		resource.RouteType:    routes,
	}, nil
}

// destinations groups the services' destinations (VIP and endpoints) by
// port; a destination an earlier service claimed is not claimed again.
func destinations(services []Service) map[int][]portService {
	claimed := map[dest]bool{}
	byPort := map[int][]portService{}
	for i := range services {
		s := &services[i]
		ds := map[int][]netip.Addr{}
		add := func(ip netip.Addr, port int) {
			d := dest{ip, port}
			if claimed[d] {
				return
			}
			claimed[d] = true
			ds[port] = append(ds[port], ip)
		}
		if s.VIP.IsValid() {
			add(s.VIP, s.Port)
		}
		for _, e := range sortedEndpoints(s.Endpoints) {
			add(e.IP, e.Port)
		}
		for port, ips := range ds {
			byPort[port] = append(byPort[port], portService{svc: s, ips: ips})
		}
	}
	return byPort
}

// outboundListener is the listener that captures the pod's outbound
// connections: per port, one HTTP chain (and its routes) for all HTTP
// services and one TCP chain per TCP service; anything else passes through
// to its original destination.
func outboundListener(byPort map[int][]portService) (*listenerv3.Listener, []types.Resource) {
	var chains []*listenerv3.FilterChain
	var routes []types.Resource
	for _, port := range slices.Sorted(maps.Keys(byPort)) {
		var httpIPs []netip.Addr
		var vhosts []*routev3.VirtualHost
		domains := map[string]bool{}
		for _, ps := range byPort[port] {
			if ps.svc.protocol() == TCP {
				chains = append(chains, &listenerv3.FilterChain{
					Name:             fmt.Sprintf("tcp|%d|%s", port, ps.svc.Name),
					FilterChainMatch: chainMatch(port, ps.ips),
					Filters:          []*listenerv3.Filter{tcpProxy(ClusterName(ps.svc.Name, ps.svc.Port), ps.svc)},
				})
				continue
			}
			httpIPs = append(httpIPs, ps.ips...)
			vhosts = append(vhosts, virtualHost(ps.svc, port, ps.ips, domains))
		}
		if len(httpIPs) > 0 {
			name := RouteName(port)
			routes = append(routes, &routev3.RouteConfiguration{Name: name, VirtualHosts: vhosts, ValidateClusters: wrapperspb.Bool(false)})
			chains = append(chains, &listenerv3.FilterChain{
				Name:             fmt.Sprintf("http|%d", port),
				FilterChainMatch: chainMatch(port, httpIPs),
				Filters:          []*listenerv3.Filter{hcm(name, nil)},
			})
		}
	}
	return &listenerv3.Listener{
		Name:             OutboundListener,
		Address:          socketAddress("0.0.0.0", OutboundPort),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		ListenerFilters:  []*listenerv3.ListenerFilter{originalDst()},
		FilterChains:     chains,
		DefaultFilterChain: &listenerv3.FilterChain{
			Name:    "passthrough",
			Filters: []*listenerv3.Filter{tcpProxy(PassthroughCluster, nil)},
		},
	}, routes
}

// inboundListener is the listener that captures the connections to the
// ports this proxy serves (a sidecar: its pod's; a node proxy: its node's
// pods'), with one cluster per port that delivers them.
func (b *builder) inboundListener(services []Service) (*listenerv3.Listener, []types.Resource) {
	inboundPorts := map[int]Protocol{}
	pod, isSidecar := strings.CutPrefix(b.nodeID, "sidecar~")
	for _, s := range services {
		for _, e := range s.Endpoints {
			if isSidecar && e.Pod != pod {
				continue
			}
			if _, ok := inboundPorts[e.Port]; !ok {
				inboundPorts[e.Port] = s.protocol()
			}
		}
	}
	var clusters []types.Resource
	var chains []*listenerv3.FilterChain
	for _, port := range slices.Sorted(maps.Keys(inboundPorts)) {
		cname := InboundClusterName(port)
		if isSidecar {
			clusters = append(clusters, inboundCluster(cname, port))
		} else {
			// A node proxy serves every pod of its node: it delivers to the
			// connection's original destination, as ztunnel does.
			clusters = append(clusters, passthroughCluster(cname))
		}
		match := &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(uint32(port))}
		if inboundPorts[port] == TCP {
			chains = append(chains, &listenerv3.FilterChain{
				Name: fmt.Sprintf("tcp|%d", port), FilterChainMatch: match,
				Filters: []*listenerv3.Filter{tcpProxy(cname, nil)},
			})
			continue
		}
		rc := &routev3.RouteConfiguration{
			Name: fmt.Sprintf("inbound|%d", port),
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    fmt.Sprintf("inbound|http|%d", port),
				Domains: []string{"*"},
				Routes: []*routev3.Route{{
					Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{
						ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cname},
						Timeout:          durationpb.New(0),
					}},
				}},
			}},
		}
		chains = append(chains, &listenerv3.FilterChain{
			Name: fmt.Sprintf("http|%d", port), FilterChainMatch: match,
			Filters: []*listenerv3.Filter{hcm("", rc)},
		})
	}
	return &listenerv3.Listener{
		Name:             InboundListener,
		Address:          socketAddress("0.0.0.0", InboundPort),
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		ListenerFilters:  []*listenerv3.ListenerFilter{originalDst()},
		FilterChains:     chains,
		DefaultFilterChain: &listenerv3.FilterChain{
			Name:    "passthrough",
			Filters: []*listenerv3.Filter{tcpProxy(InboundPassthroughCluster, nil)},
		},
	}, clusters
}

type portService struct {
	svc *Service
	ips []netip.Addr
}

func sortedEndpoints(eps []Endpoint) []Endpoint {
	out := slices.Clone(eps)
	sort.SliceStable(out, func(i, j int) bool {
		if c := out[i].IP.Compare(out[j].IP); c != 0 {
			return c < 0
		}
		return out[i].Port < out[j].Port
	})
	return out
}

func chainMatch(port int, ips []netip.Addr) *listenerv3.FilterChainMatch {
	m := &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(uint32(port))}
	sorted := slices.Clone(ips)
	slices.SortFunc(sorted, func(a, b netip.Addr) int { return a.Compare(b) })
	for _, ip := range sorted {
		m.PrefixRanges = append(m.PrefixRanges, &corev3.CidrRange{AddressPrefix: ip.String(), PrefixLen: wrapperspb.UInt32(32)})
	}
	return m
}

func virtualHost(s *Service, port int, ips []netip.Addr, seen map[string]bool) *routev3.VirtualHost {
	var domains []string
	add := func(d string) {
		if !seen[d] {
			seen[d] = true
			domains = append(domains, d)
		}
	}
	add(s.Name)
	add(s.Name + ":" + strconv.Itoa(port))
	for _, ip := range ips {
		add(ip.String())
		add(netip.AddrPortFrom(ip, uint16(port)).String())
	}
	action := &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: ClusterName(s.Name, s.Port)},
		Timeout:          durationpb.New(s.Timeout),
	}
	if s.Retries.Attempts > 0 {
		rp := &routev3.RetryPolicy{
			RetryOn:    s.Retries.retryOn(),
			NumRetries: wrapperspb.UInt32(s.Retries.Attempts),
		}
		if s.Retries.PerTryTimeout > 0 {
			rp.PerTryTimeout = durationpb.New(s.Retries.PerTryTimeout)
		}
		action.RetryPolicy = rp
	}
	if s.lbPolicy() == Maglev || s.lbPolicy() == RingHash {
		if s.HashHeader != "" {
			action.HashPolicy = []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
				Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: s.HashHeader},
			}}}
		} else {
			action.HashPolicy = []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{
				ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true},
			}}}
		}
	}
	return &routev3.VirtualHost{
		Name:    fmt.Sprintf("%s:%d", s.Name, s.Port),
		Domains: domains,
		Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: action},
		}},
	}
}

func (r RetryPolicy) retryOn() string {
	if r.RetryOn == "" {
		return "connect-failure,5xx"
	}
	return r.RetryOn
}

func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(fmt.Sprintf("marshal %T: %v", m, err)) // only on programming errors
	}
	return a
}

func originalDst() *listenerv3.ListenerFilter {
	return &listenerv3.ListenerFilter{
		Name:       wellknown.OriginalDestination,
		ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&origdstv3.OriginalDst{})},
	}
}

func hcm(rdsName string, inline *routev3.RouteConfiguration) *listenerv3.Filter {
	h := &hcmv3.HttpConnectionManager{
		StatPrefix: "outbound",
		CodecType:  hcmv3.HttpConnectionManager_HTTP1,
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       wellknown.Router,
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})},
		}},
	}
	if inline != nil {
		h.StatPrefix = "inbound"
		h.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: inline}
	} else {
		h.RouteSpecifier = &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: adsSource(), RouteConfigName: rdsName}}
	}
	return &listenerv3.Filter{
		Name:       wellknown.HTTPConnectionManager,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(h)},
	}
}

func tcpProxy(cluster string, s *Service) *listenerv3.Filter {
	t := &tcpv3.TcpProxy{
		StatPrefix:       cluster,
		ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: cluster},
	}
	if s != nil && (s.lbPolicy() == Maglev || s.lbPolicy() == RingHash) {
		t.HashPolicy = []*typev3.HashPolicy{{PolicySpecifier: &typev3.HashPolicy_SourceIp_{SourceIp: &typev3.HashPolicy_SourceIp{}}}}
	}
	return &listenerv3.Filter{
		Name:       wellknown.TCPProxy,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t)},
	}
}

func socketAddress(ip string, port int) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol:      corev3.SocketAddress_TCP,
		Address:       ip,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
	}}}
}

func orDefault(v, def uint32) uint32 {
	if v == 0 {
		return def
	}
	return v
}

func (b *builder) cluster(s *Service) *clusterv3.Cluster {
	ct := s.ConnectTimeout
	if ct == 0 {
		ct = time.Second
	}
	c := &clusterv3.Cluster{
		Name:                 ClusterName(s.Name, s.Port),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource()},
		ConnectTimeout:       durationpb.New(ct),
		CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			Priority:           corev3.RoutingPriority_DEFAULT,
			MaxConnections:     wrapperspb.UInt32(orDefault(s.CircuitBreakers.MaxConnections, DefaultMaxConnections)),
			MaxPendingRequests: wrapperspb.UInt32(orDefault(s.CircuitBreakers.MaxPendingRequests, DefaultMaxPendingRequests)),
			MaxRequests:        wrapperspb.UInt32(orDefault(s.CircuitBreakers.MaxRequests, DefaultMaxRequests)),
			MaxRetries:         wrapperspb.UInt32(orDefault(s.CircuitBreakers.MaxRetries, DefaultMaxRetries)),
		}}},
	}
	switch s.lbPolicy() {
	case RoundRobin:
		c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
	case LeastRequest:
		c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
		c.LbConfig = &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{ChoiceCount: wrapperspb.UInt32(2)}}
	case Maglev:
		c.LbPolicy = clusterv3.Cluster_MAGLEV
	case Random:
		c.LbPolicy = clusterv3.Cluster_RANDOM
	case RingHash:
		c.LbPolicy = clusterv3.Cluster_RING_HASH
	}
	return c
}

func passthroughCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
		ConnectTimeout:       durationpb.New(time.Second),
	}
}

func inboundCluster(name string, port int) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		ConnectTimeout:       durationpb.New(time.Second),
		LoadAssignment: loadAssignment(name, []Endpoint{{
			IP: netip.AddrFrom4([4]byte{127, 0, 0, 1}), Port: port, Healthy: true,
		}}),
	}
}

func loadAssignment(cluster string, eps []Endpoint) *endpointv3.ClusterLoadAssignment {
	var lbs []*endpointv3.LbEndpoint
	for _, e := range sortedEndpoints(eps) {
		hs := corev3.HealthStatus_HEALTHY
		if !e.Healthy {
			hs = corev3.HealthStatus_UNHEALTHY
		}
		lbs = append(lbs, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address:  socketAddress(e.IP.String(), e.Port),
				Hostname: e.Pod,
			}},
			HealthStatus: hs,
		})
	}
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: cluster,
		Endpoints:   []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}},
	}
}
