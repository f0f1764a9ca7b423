package proxy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"           // typed config the HCM carries
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3" // typed config listeners carry
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
)

// lbKind is a cluster's load-balancing policy.
type lbKind int

const (
	lbRoundRobin lbKind = iota
	lbLeastRequest
	lbMaglev
	lbRandom
	lbOriginalDst
)

// clusterCfg is one cluster, compiled from CDS (and EDS or its inline load
// assignment).
type clusterCfg struct {
	name           string
	eds            bool
	edsName        string // the EDS resource: service_name, or the cluster's name
	originalDst    bool
	lb             lbKind
	connectTimeout time.Duration
	maxConnections int64
	maxPending     int64
	maxRequests    int64
	maxRetries     int64
	static         []endpoint // inline load assignment
}

type endpoint struct {
	addr     netip.AddrPort
	hostname string
	healthy  bool
}

type listenerCfg struct {
	name      string
	port      int
	direction corev3.TrafficDirection
	chains    []*chainCfg
	def       *chainCfg
}

type chainCfg struct {
	name     string
	port     uint32 // 0: any
	prefixes []netip.Prefix
	// exactly one of http, tcp
	http *httpCfg
	tcp  *tcpCfg
}

type httpCfg struct {
	rds    string
	inline *routeCfg
}

type tcpCfg struct {
	cluster      string
	hashSourceIP bool
}

type routeCfg struct {
	name     string
	byDomain map[string]*vhostCfg
	wildcard *vhostCfg
	suffix   []*vhostCfg // "*.example" and "*-suffix" domains, in order
	prefix   []*vhostCfg
}

type vhostCfg struct {
	name    string
	domains []string
	routes  []*routeEntry
}

type routeEntry struct {
	prefix  string
	path    string // exact path, when set
	cluster string
	timeout time.Duration
	retry   *retryCfg
	hash    *hashCfg
}

type retryCfg struct {
	numRetries    int
	perTryTimeout time.Duration
	onConnect     bool // connect-failure
	on5xx         bool // 5xx
	onGateway     bool // gateway-error: 502, 503, 504
	onReset       bool // reset
}

type hashCfg struct {
	header   string
	sourceIP bool
}

func compileCluster(c *clusterv3.Cluster) (*clusterCfg, error) {
	cc := &clusterCfg{
		name:           c.GetName(),
		connectTimeout: c.GetConnectTimeout().AsDuration(),
		maxConnections: 1024, maxPending: 1024, maxRequests: 1024, maxRetries: 3,
	}
	if cc.name == "" {
		return nil, errors.New("cluster without name")
	}
	if cc.connectTimeout <= 0 {
		cc.connectTimeout = 5 * time.Second
	}
	switch c.GetType() {
	case clusterv3.Cluster_EDS:
		cc.eds = true
		cc.edsName = c.GetEdsClusterConfig().GetServiceName()
		if cc.edsName == "" {
			cc.edsName = cc.name
		}
	case clusterv3.Cluster_STATIC:
		eps, err := compileAssignment(c.GetLoadAssignment())
		if err != nil {
			return nil, fmt.Errorf("cluster %s: %w", cc.name, err)
		}
		cc.static = eps
	case clusterv3.Cluster_ORIGINAL_DST:
		cc.originalDst = true
	default:
		return nil, fmt.Errorf("cluster %s: discovery type %s not supported by the builtin engine", cc.name, c.GetType())
	}
	if c.GetLoadBalancingPolicy() != nil {
		return nil, fmt.Errorf("cluster %s: load_balancing_policy not supported by the builtin engine", cc.name)
	}
	switch c.GetLbPolicy() {
	case clusterv3.Cluster_ROUND_ROBIN:
		cc.lb = lbRoundRobin
	case clusterv3.Cluster_LEAST_REQUEST:
		cc.lb = lbLeastRequest
		if n := c.GetLeastRequestLbConfig().GetChoiceCount(); n != nil && n.GetValue() != 2 {
			return nil, fmt.Errorf("cluster %s: least request choice_count %d not supported (only 2)", cc.name, n.GetValue())
		}
	case clusterv3.Cluster_MAGLEV:
		cc.lb = lbMaglev
	case clusterv3.Cluster_RANDOM:
		cc.lb = lbRandom
	case clusterv3.Cluster_CLUSTER_PROVIDED:
		if !cc.originalDst {
			return nil, fmt.Errorf("cluster %s: lb policy CLUSTER_PROVIDED needs an ORIGINAL_DST cluster", cc.name)
		}
		cc.lb = lbOriginalDst
	default:
		return nil, fmt.Errorf("cluster %s: lb policy %s not supported by the builtin engine", cc.name, c.GetLbPolicy())
	}
	if cc.originalDst && cc.lb != lbOriginalDst {
		return nil, fmt.Errorf("cluster %s: ORIGINAL_DST cluster needs lb policy CLUSTER_PROVIDED", cc.name)
	}
	for _, t := range c.GetCircuitBreakers().GetThresholds() {
		if t.GetPriority() != corev3.RoutingPriority_DEFAULT {
			continue
		}
		if v := t.GetMaxConnections(); v != nil {
			cc.maxConnections = int64(v.GetValue())
		}
		if v := t.GetMaxPendingRequests(); v != nil {
			cc.maxPending = int64(v.GetValue())
		}
		if v := t.GetMaxRequests(); v != nil {
			cc.maxRequests = int64(v.GetValue())
		}
		if v := t.GetMaxRetries(); v != nil {
			cc.maxRetries = int64(v.GetValue())
		}
	}
	return cc, nil
}

func compileAssignment(cla *endpointv3.ClusterLoadAssignment) ([]endpoint, error) {
	var out []endpoint
	for _, loc := range cla.GetEndpoints() {
		for _, lbe := range loc.GetLbEndpoints() {
			ep := lbe.GetEndpoint()
			if ep == nil {
				return nil, errors.New("named endpoints not supported")
			}
			ap, err := socketAddr(ep.GetAddress())
			if err != nil {
				return nil, err
			}
			hs := lbe.GetHealthStatus()
			out = append(out, endpoint{
				addr: ap, hostname: ep.GetHostname(),
				healthy: hs == corev3.HealthStatus_HEALTHY || hs == corev3.HealthStatus_UNKNOWN,
			})
		}
	}
	return out, nil
}

func socketAddr(a *corev3.Address) (netip.AddrPort, error) {
	sa := a.GetSocketAddress()
	if sa == nil {
		return netip.AddrPort{}, errors.New("address is not a socket address")
	}
	if sa.GetProtocol() != corev3.SocketAddress_TCP {
		return netip.AddrPort{}, fmt.Errorf("address %s: only TCP", sa.GetAddress())
	}
	ip, err := netip.ParseAddr(sa.GetAddress())
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: %w", sa.GetAddress(), err)
	}
	return netip.AddrPortFrom(ip, uint16(sa.GetPortValue())), nil
}

func compileListener(l *listenerv3.Listener) (*listenerCfg, error) {
	lc := &listenerCfg{name: l.GetName(), direction: l.GetTrafficDirection()}
	if ap, err := socketAddr(l.GetAddress()); err == nil {
		lc.port = int(ap.Port())
	}
	for _, lf := range l.GetListenerFilters() {
		if lf.GetName() != "envoy.filters.listener.original_dst" {
			return nil, fmt.Errorf("listener %s: listener filter %s not supported by the builtin engine", lc.name, lf.GetName())
		}
	}
	for _, fc := range l.GetFilterChains() {
		c, err := compileChain(fc)
		if err != nil {
			return nil, fmt.Errorf("listener %s: %w", lc.name, err)
		}
		lc.chains = append(lc.chains, c)
	}
	if fc := l.GetDefaultFilterChain(); fc != nil {
		c, err := compileChain(fc)
		if err != nil {
			return nil, fmt.Errorf("listener %s: default chain: %w", lc.name, err)
		}
		lc.def = c
	}
	return lc, nil
}

func compileChain(fc *listenerv3.FilterChain) (*chainCfg, error) {
	c := &chainCfg{name: fc.GetName()}
	m := fc.GetFilterChainMatch()
	if p := m.GetDestinationPort(); p != nil {
		c.port = p.GetValue()
	}
	for _, r := range m.GetPrefixRanges() {
		ip, err := netip.ParseAddr(r.GetAddressPrefix())
		if err != nil {
			return nil, fmt.Errorf("chain %s: prefix %q: %w", c.name, r.GetAddressPrefix(), err)
		}
		bits := ip.BitLen()
		if r.GetPrefixLen() != nil {
			bits = int(r.GetPrefixLen().GetValue())
		}
		p, err := ip.Prefix(bits)
		if err != nil {
			return nil, fmt.Errorf("chain %s: %w", c.name, err)
		}
		c.prefixes = append(c.prefixes, p)
	}
	if len(m.GetServerNames()) > 0 || len(m.GetSourcePrefixRanges()) > 0 || len(m.GetApplicationProtocols()) > 0 || m.GetTransportProtocol() != "" {
		return nil, fmt.Errorf("chain %s: only destination port and prefix matches are supported by the builtin engine", c.name)
	}
	if len(fc.GetFilters()) != 1 {
		return nil, fmt.Errorf("chain %s: want exactly one network filter, got %d", c.name, len(fc.GetFilters()))
	}
	msg, err := fc.GetFilters()[0].GetTypedConfig().UnmarshalNew()
	if err != nil {
		return nil, fmt.Errorf("chain %s: filter %s: %w", c.name, fc.GetFilters()[0].GetName(), err)
	}
	switch f := msg.(type) {
	case *hcmv3.HttpConnectionManager:
		h := &httpCfg{}
		switch {
		case f.GetRds() != nil:
			h.rds = f.GetRds().GetRouteConfigName()
		case f.GetRouteConfig() != nil:
			rc, err := compileRoutes(f.GetRouteConfig())
			if err != nil {
				return nil, fmt.Errorf("chain %s: %w", c.name, err)
			}
			h.inline = rc
		default:
			return nil, fmt.Errorf("chain %s: http connection manager without routes", c.name)
		}
		c.http = h
	case *tcpv3.TcpProxy:
		cl := f.GetCluster()
		if cl == "" {
			return nil, fmt.Errorf("chain %s: tcp proxy without a cluster (weighted clusters not supported)", c.name)
		}
		t := &tcpCfg{cluster: cl}
		for _, hp := range f.GetHashPolicy() {
			if hp.GetSourceIp() != nil {
				t.hashSourceIP = true
			}
		}
		c.tcp = t
	default:
		return nil, fmt.Errorf("chain %s: network filter %T not supported by the builtin engine", c.name, msg)
	}
	return c, nil
}

func compileRoutes(rc *routev3.RouteConfiguration) (*routeCfg, error) {
	out := &routeCfg{name: rc.GetName(), byDomain: map[string]*vhostCfg{}}
	for _, vh := range rc.GetVirtualHosts() {
		v := &vhostCfg{name: vh.GetName(), domains: vh.GetDomains()}
		for _, r := range vh.GetRoutes() {
			e := &routeEntry{}
			switch m := r.GetMatch(); {
			case m.GetPrefix() != "" || m.GetPath() == "" && m.GetSafeRegex() == nil && m.GetPathSeparatedPrefix() == "" && m.GetConnectMatcher() == nil && m.GetPathMatchPolicy() == nil:
				e.prefix = m.GetPrefix()
			case m.GetPath() != "":
				e.path = m.GetPath()
			default:
				return nil, fmt.Errorf("route config %s: virtual host %s: only prefix and path matches are supported", rc.GetName(), vh.GetName())
			}
			if len(r.GetMatch().GetHeaders()) > 0 || len(r.GetMatch().GetQueryParameters()) > 0 {
				return nil, fmt.Errorf("route config %s: virtual host %s: header and query matches not supported", rc.GetName(), vh.GetName())
			}
			a := r.GetRoute()
			if a == nil || a.GetCluster() == "" {
				return nil, fmt.Errorf("route config %s: virtual host %s: only routes to one cluster are supported", rc.GetName(), vh.GetName())
			}
			e.cluster = a.GetCluster()
			e.timeout = 15 * time.Second // Envoy's default
			if a.GetTimeout() != nil {
				e.timeout = a.GetTimeout().AsDuration()
			}
			if rp := a.GetRetryPolicy(); rp != nil {
				rt := &retryCfg{numRetries: 1, perTryTimeout: rp.GetPerTryTimeout().AsDuration()}
				if rp.GetNumRetries() != nil {
					rt.numRetries = int(rp.GetNumRetries().GetValue())
				}
				for _, on := range strings.Split(rp.GetRetryOn(), ",") {
					switch strings.TrimSpace(on) {
					case "connect-failure":
						rt.onConnect = true
					case "5xx":
						rt.on5xx = true
					case "gateway-error":
						rt.onGateway = true
					case "reset":
						rt.onReset = true
					case "":
					default:
						return nil, fmt.Errorf("route config %s: retry_on %q not supported by the builtin engine", rc.GetName(), on)
					}
				}
				e.retry = rt
			}
			for _, hp := range a.GetHashPolicy() {
				switch {
				case hp.GetHeader() != nil:
					e.hash = &hashCfg{header: hp.GetHeader().GetHeaderName()}
				case hp.GetConnectionProperties() != nil && hp.GetConnectionProperties().GetSourceIp():
					e.hash = &hashCfg{sourceIP: true}
				default:
					return nil, fmt.Errorf("route config %s: hash policy %v not supported by the builtin engine", rc.GetName(), hp)
				}
				break
			}
			v.routes = append(v.routes, e)
		}
		for _, d := range vh.GetDomains() {
			d = strings.ToLower(d)
			switch {
			case d == "*":
				out.wildcard = v
			case strings.HasPrefix(d, "*"):
				out.suffix = append(out.suffix, v)
			case strings.HasSuffix(d, "*"):
				out.prefix = append(out.prefix, v)
			default:
				if _, dup := out.byDomain[d]; dup {
					return nil, fmt.Errorf("route config %s: duplicate domain %q", rc.GetName(), d)
				}
				out.byDomain[d] = v
			}
		}
	}
	return out, nil
}

// vhost selects the virtual host of a Host header, as Envoy does: exact,
// then suffix wildcards, then prefix wildcards, then "*".
func (rc *routeCfg) vhost(host string) *vhostCfg {
	host = strings.ToLower(host)
	if v, ok := rc.byDomain[host]; ok {
		return v
	}
	for _, v := range rc.suffix {
		for _, d := range v.domains {
			if strings.HasPrefix(d, "*") && d != "*" && strings.HasSuffix(host, d[1:]) {
				return v
			}
		}
	}
	for _, v := range rc.prefix {
		for _, d := range v.domains {
			if strings.HasSuffix(d, "*") && d != "*" && strings.HasPrefix(host, d[:len(d)-1]) {
				return v
			}
		}
	}
	return rc.wildcard
}

func (v *vhostCfg) route(path string) *routeEntry {
	for _, r := range v.routes {
		if r.path != "" {
			if r.path == path {
				return r
			}
			continue
		}
		if strings.HasPrefix(path, r.prefix) {
			return r
		}
	}
	return nil
}

// match selects the filter chain of a destination as Envoy does: chains
// matching the destination port before port-less ones, then the longest
// matching prefix; the default chain when none matches.
func (l *listenerCfg) match(dst netip.AddrPort) *chainCfg {
	var best *chainCfg
	bestPort, bestBits := false, -2
	for _, c := range l.chains {
		if c.port != 0 && c.port != uint32(dst.Port()) {
			continue
		}
		bits := -1
		if len(c.prefixes) > 0 {
			bits = -2
			for _, p := range c.prefixes {
				if p.Contains(dst.Addr().Unmap()) && p.Bits() > bits {
					bits = p.Bits()
				}
			}
			if bits == -2 {
				continue
			}
		}
		portMatch := c.port != 0
		if best == nil || portMatch && !bestPort || portMatch == bestPort && bits > bestBits {
			best, bestPort, bestBits = c, portMatch, bits
		}
	}
	if best == nil {
		return l.def
	}
	return best
}
