package proxy

import (
	"fmt"
	"math"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// HAProxyOptions shape the haproxy.cfg the haproxy engine renders from its
// xDS configuration.
type HAProxyOptions struct {
	// ListenIP is the address the listeners bind; default 0.0.0.0.
	ListenIP string
	// OutboundPort and InboundPort replace the outbound and inbound
	// listeners' ports (0: the listeners' own; Disabled: no frontend).
	OutboundPort, InboundPort int
	// StatsSocket is the runtime API's unix socket (endpoint changes and
	// counters go through it).
	StatsSocket string
	// ACLDir, when set, holds the patterns of the destination and Host
	// ACLs in files (one per ACL, haproxyConfig.aclFiles) that the
	// configuration loads: a pod's new address changes only their
	// contents, which the runtime API replaces atomically, not the
	// configuration.
	ACLDir string
	// SpareServers are the disabled server slots each EDS backend keeps
	// beyond its endpoints, so that endpoints can be added through the
	// runtime API without a reload. Default 4.
	SpareServers int
	// Threads is haproxy's nbthread; default 1.
	Threads int
}

// haproxyConfig is a rendered haproxy.cfg and what the rendering knows of
// it: the backend of each cluster, and the xDS settings HAProxy has no
// equivalent for (said in the results as the builtin engine's are).
type haproxyConfig struct {
	text string
	// backends maps a cluster name to its HAProxy backend; servers the
	// server names of each EDS backend, slot by slot.
	backends map[string]string
	servers  map[string][]string
	// frontends maps a listener's name to its frontend.
	frontends map[string]string
	// aclFiles are the patterns of each ACL file (with ACLDir), by path.
	aclFiles map[string][]string
	notes    []string
}

// haproxyName makes an xDS name a valid HAProxy proxy name (letters,
// digits, '-', '_', '.', ':').
var haproxyUnsafe = regexp.MustCompile(`[^A-Za-z0-9_.:-]`)

func haproxyName(prefix, name string) string {
	return prefix + haproxyUnsafe.ReplaceAllString(name, "_")
}

// hapDuration renders a duration in milliseconds ("0" stays "0").
func hapDuration(d time.Duration) string {
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}

// routeSettings are the route settings that HAProxy keeps on a backend.
type routeSettings struct {
	timeout time.Duration
	retry   *retryCfg
	hash    *hashCfg
}

// renderHAProxy renders the compiled configuration c as haproxy.cfg.
//
// Each listener is a frontend in TCP mode on its port. A filter chain is
// an ACL on the original destination (dst and dst_port, which HAProxy
// reads with SO_ORIGINAL_DST, so REDIRECT and the connect4 steering both
// work): a TCP chain uses its cluster's backend; an HTTP chain switches
// the stream to HTTP and picks the backend by Host among its virtual hosts
// (404 when none matches, as Envoy answers). The default chain is the
// default backend. Each cluster is a backend: EDS endpoints are servers
// (unhealthy ones disabled, plus spare disabled slots), an original
// destination cluster is HAProxy's transparent server 0.0.0.0:0. Route
// timeouts, retries and hash policies go onto the backend of their
// cluster.
func renderHAProxy(c compiledSet, o HAProxyOptions) (*haproxyConfig, error) {
	if o.ListenIP == "" {
		o.ListenIP = "0.0.0.0"
	}
	if o.SpareServers <= 0 {
		o.SpareServers = 4
	}
	out := &haproxyConfig{backends: map[string]string{}, servers: map[string][]string{}, frontends: map[string]string{}, aclFiles: map[string][]string{}}
	// patterns renders an ACL's patterns inline, or in its file.
	patterns := func(fe, acl string, values []string) string {
		if o.ACLDir == "" {
			return strings.Join(values, " ")
		}
		path := filepath.Join(o.ACLDir, fe+"."+acl+".acl")
		out.aclFiles[path] = values
		return "-f " + path
	}
	note := func(format string, args ...any) {
		n := fmt.Sprintf(format, args...)
		if !slices.Contains(out.notes, n) {
			out.notes = append(out.notes, n)
		}
	}
	for _, name := range sortedKeys(c.clusters) {
		out.backends[name] = haproxyName("be_", name)
	}

	// Route settings per cluster, from every route that reaches it.
	settings := map[string]routeSettings{}
	routeOf := func(h *httpCfg) *routeCfg {
		if h.inline != nil {
			return h.inline
		}
		return c.routes[h.rds]
	}
	for _, ln := range sortedKeys(c.listeners) {
		l := c.listeners[ln]
		for _, ch := range append(slices.Clone(l.chains), l.def) {
			if ch == nil || ch.http == nil {
				continue
			}
			rc := routeOf(ch.http)
			if rc == nil {
				return nil, fmt.Errorf("haproxy: listener %s: route configuration %q not received", ln, ch.http.rds)
			}
			for _, v := range vhosts(rc) {
				for _, r := range v.routes {
					if r.prefix != "/" && r.prefix != "" || r.path != "" {
						note("route %s%s of %s: path matches are not rendered; HAProxy sends the virtual host's requests to its first route's cluster", r.prefix, r.path, v.name)
					}
					s := routeSettings{timeout: r.timeout, retry: r.retry, hash: r.hash}
					if prev, ok := settings[r.cluster]; ok && !sameSettings(prev, s) {
						note("cluster %s is reached by routes with different timeouts, retries or hashing; HAProxy keeps them on the backend, and uses the first", r.cluster)
						continue
					}
					settings[r.cluster] = s
				}
			}
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "# Rendered by meshbench's haproxy engine from its xDS configuration.\n")
	fmt.Fprintf(&b, "global\n")
	fmt.Fprintf(&b, "    nbthread %d\n", max(o.Threads, 1))
	if o.StatsSocket != "" {
		fmt.Fprintf(&b, "    stats socket %s mode 600 level admin\n", o.StatsSocket)
	}
	fmt.Fprintf(&b, "\ndefaults\n")
	fmt.Fprintf(&b, "    timeout client 1h\n")
	fmt.Fprintf(&b, "    timeout server 1h\n")
	fmt.Fprintf(&b, "    timeout connect 5s\n")
	fmt.Fprintf(&b, "    timeout http-keep-alive 1h\n")

	for _, ln := range sortedKeys(c.listeners) {
		l := c.listeners[ln]
		port := l.port
		want := 0
		switch l.direction {
		case corev3.TrafficDirection_OUTBOUND:
			want = o.OutboundPort
		case corev3.TrafficDirection_INBOUND:
			want = o.InboundPort
		}
		switch {
		case want == Disabled:
			continue
		case want > 0:
			port = want
		}
		fe := haproxyName("fe_", ln)
		out.frontends[ln] = fe
		fmt.Fprintf(&b, "\nfrontend %s\n", fe)
		fmt.Fprintf(&b, "    mode tcp\n")
		fmt.Fprintf(&b, "    bind %s\n", netip.AddrPortFrom(netip.MustParseAddr(o.ListenIP), uint16(port)))
		fmt.Fprintf(&b, "    tcp-request inspect-delay 5s\n")
		// HAProxy runs a frontend's tcp-request rules, then its
		// http-request rules, then its use_backend rules, whatever their
		// order in the file: they are written in that order. A chain that
		// another could shadow is refused (Envoy picks the most specific).
		if err := disjointChains(l); err != nil {
			return nil, fmt.Errorf("haproxy: listener %s: %w", ln, err)
		}
		var httpRules, useRules strings.Builder
		for i, ch := range l.chains {
			// A chain matches when all of its conditions hold: ACLs
			// named on one condition line are ANDed.
			var acls []string
			if ch.port != 0 {
				acls = append(acls, fmt.Sprintf("chain%d_port", i))
				fmt.Fprintf(&b, "    acl %s dst_port %d\n", acls[len(acls)-1], ch.port)
			}
			if len(ch.prefixes) > 0 {
				ps := make([]string, len(ch.prefixes))
				for j, p := range ch.prefixes {
					ps[j] = p.String()
				}
				acls = append(acls, fmt.Sprintf("chain%d_dst", i))
				fmt.Fprintf(&b, "    acl %s dst %s\n", acls[len(acls)-1], patterns(fe, acls[len(acls)-1], ps))
			}
			if len(acls) == 0 {
				acls = append(acls, "TRUE")
			}
			acl := strings.Join(acls, " ")
			switch {
			case ch.tcp != nil:
				be, ok := out.backends[ch.tcp.cluster]
				if !ok {
					return nil, fmt.Errorf("haproxy: listener %s: chain %s: cluster %s not received", ln, ch.name, ch.tcp.cluster)
				}
				fmt.Fprintf(&useRules, "    use_backend %s if %s\n", be, acl)
			case ch.http != nil:
				// Switched to HTTP, the stream picks its virtual host by
				// Host; none matching is a 404, as Envoy answers.
				fmt.Fprintf(&b, "    tcp-request content switch-mode http if %s\n", acl)
				type vh struct{ acl, backend string }
				var hosts []vh
				wildcard := ""
				for k, v := range vhosts(routeOf(ch.http)) {
					if len(v.routes) == 0 {
						continue
					}
					be, ok := out.backends[v.routes[0].cluster]
					if !ok {
						return nil, fmt.Errorf("haproxy: listener %s: virtual host %s: cluster %s not received", ln, v.name, v.routes[0].cluster)
					}
					if slices.Contains(v.domains, "*") {
						wildcard = be
						continue
					}
					if slices.ContainsFunc(v.domains, func(d string) bool { return strings.Contains(d, "*") }) {
						note("virtual host %s: wildcard domains other than \"*\" are not rendered", v.name)
					}
					a := fmt.Sprintf("chain%d_host%d", i, k)
					fmt.Fprintf(&b, "    acl %s req.hdr(host),lower -m str %s\n", a, patterns(fe, a, lowerAll(v.domains)))
					hosts = append(hosts, vh{a, be})
				}
				if wildcard == "" {
					none := make([]string, len(hosts))
					for k, h := range hosts {
						none[k] = "!" + h.acl
					}
					fmt.Fprintf(&httpRules, "    http-request deny deny_status 404 if %s %s\n", acl, strings.Join(none, " "))
				}
				for _, h := range hosts {
					fmt.Fprintf(&useRules, "    use_backend %s if %s %s\n", h.backend, acl, h.acl)
				}
				if wildcard != "" {
					fmt.Fprintf(&useRules, "    use_backend %s if %s\n", wildcard, acl)
				}
			}
		}
		b.WriteString(httpRules.String())
		b.WriteString(useRules.String())
		if l.def != nil {
			if l.def.tcp == nil {
				return nil, fmt.Errorf("haproxy: listener %s: only a TCP default chain is rendered", ln)
			}
			be, ok := out.backends[l.def.tcp.cluster]
			if !ok {
				return nil, fmt.Errorf("haproxy: listener %s: default chain: cluster %s not received", ln, l.def.tcp.cluster)
			}
			fmt.Fprintf(&b, "    default_backend %s\n", be)
		}
	}

	for _, cn := range sortedKeys(c.clusters) {
		cl := c.clusters[cn]
		be := out.backends[cn]
		s := settings[cn]
		mode := "tcp"
		if _, routed := settings[cn]; routed {
			mode = "http"
		}
		fmt.Fprintf(&b, "\nbackend %s\n", be)
		fmt.Fprintf(&b, "    mode %s\n", mode)
		fmt.Fprintf(&b, "    timeout connect %s\n", hapDuration(cl.connectTimeout))
		switch {
		case cl.originalDst:
		case s.hash != nil && s.hash.header != "":
			fmt.Fprintf(&b, "    balance hdr(%s)\n", s.hash.header)
			fmt.Fprintf(&b, "    hash-type consistent\n")
			if cl.lb == lbMaglev {
				note("cluster %s: Maglev is rendered as HAProxy's consistent hashing (a hash ring)", cn)
			}
		case s.hash != nil && s.hash.sourceIP:
			fmt.Fprintf(&b, "    balance source\n")
			fmt.Fprintf(&b, "    hash-type consistent\n")
		case cl.lb == lbLeastRequest:
			fmt.Fprintf(&b, "    balance leastconn\n")
			note("cluster %s: least request (two random choices) is rendered as HAProxy's leastconn (all servers)", cn)
		case cl.lb == lbRandom:
			fmt.Fprintf(&b, "    balance random(2)\n")
		case cl.lb == lbMaglev:
			fmt.Fprintf(&b, "    balance source\n")
			fmt.Fprintf(&b, "    hash-type consistent\n")
			note("cluster %s: Maglev is rendered as HAProxy's consistent hashing (a hash ring)", cn)
		default:
			fmt.Fprintf(&b, "    balance roundrobin\n")
		}
		if mode == "http" {
			if s.timeout > 0 && (s.retry == nil || s.retry.perTryTimeout <= 0) {
				fmt.Fprintf(&b, "    timeout server %s\n", hapDuration(s.timeout))
			}
			if r := s.retry; r != nil && r.numRetries > 0 {
				on := []string{}
				if r.onConnect || r.onReset {
					on = append(on, "conn-failure", "empty-response")
				}
				if r.on5xx {
					on = append(on, "500", "501", "502", "503", "504")
				} else if r.onGateway {
					on = append(on, "502", "503", "504")
				}
				fmt.Fprintf(&b, "    retries %d\n", r.numRetries)
				fmt.Fprintf(&b, "    retry-on %s\n", strings.Join(on, " "))
				fmt.Fprintf(&b, "    option redispatch 1\n")
				if r.perTryTimeout > 0 {
					note("cluster %s: a try's timeout is HAProxy's timeout server, which replaces the route's whole-request timeout", cn)
					fmt.Fprintf(&b, "    timeout server %s\n", hapDuration(r.perTryTimeout))
				}
			}
		}
		var eps []endpoint
		switch {
		case cl.originalDst:
			fmt.Fprintf(&b, "    server original 0.0.0.0:0\n")
			continue
		case cl.eds:
			eps = c.assignments[cl.edsName]
		default:
			eps = cl.static
		}
		slots := len(eps)
		if cl.eds {
			slots += o.SpareServers
		}
		perServer := func(limit int64) int64 {
			return int64(math.Ceil(float64(limit) / float64(max(len(eps), 1))))
		}
		if cl.maxConnections != 1024 || cl.maxPending != 1024 {
			note("cluster %s: circuit breakers are per cluster in xDS and per server in HAProxy: max_connections and max_pending_requests are split evenly over its endpoints", cn)
		}
		if cl.maxRequests != 1024 {
			note("cluster %s: max_requests (concurrent requests over HTTP/2) has no HAProxy equivalent over HTTP/1.1", cn)
		}
		if cl.maxRetries != 3 {
			note("cluster %s: max_retries (concurrent retries) has no HAProxy equivalent", cn)
		}
		names := make([]string, 0, slots)
		for i := 0; i < slots; i++ {
			name := fmt.Sprintf("ep%d", i)
			names = append(names, name)
			if i >= len(eps) {
				fmt.Fprintf(&b, "    server %s 127.0.0.1:1 disabled\n", name)
				continue
			}
			ep := eps[i]
			line := fmt.Sprintf("    server %s %s maxconn %d maxqueue %d", name, ep.addr, perServer(cl.maxConnections), perServer(cl.maxPending))
			if !ep.healthy {
				line += " disabled"
			}
			fmt.Fprintln(&b, line)
		}
		if cl.eds {
			out.servers[cn] = names
		}
	}
	out.text = b.String()
	return out, nil
}

// disjointChains checks that no filter chain of l can match a destination
// another also matches: HAProxy takes the first rule that matches, Envoy
// the most specific chain. The model's chains are disjoint (one per port,
// or per port and destination addresses).
func disjointChains(l *listenerCfg) error {
	for i, a := range l.chains {
		for _, b := range l.chains[i+1:] {
			if a.port != 0 && b.port != 0 && a.port != b.port {
				continue
			}
			if len(a.prefixes) > 0 && len(b.prefixes) > 0 && !slices.ContainsFunc(a.prefixes, func(p netip.Prefix) bool {
				return slices.ContainsFunc(b.prefixes, p.Overlaps)
			}) {
				continue
			}
			return fmt.Errorf("filter chains %q and %q overlap; only disjoint chains are rendered", a.name, b.name)
		}
	}
	return nil
}

// vhosts returns a route configuration's virtual hosts in a stable order:
// by name, the wildcard last.
func vhosts(rc *routeCfg) []*vhostCfg {
	set := map[*vhostCfg]bool{}
	for _, v := range rc.byDomain {
		set[v] = true
	}
	for _, v := range append(slices.Clone(rc.suffix), rc.prefix...) {
		set[v] = true
	}
	var out []*vhostCfg
	for v := range set {
		if v != rc.wildcard {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	if rc.wildcard != nil {
		out = append(out, rc.wildcard)
	}
	return out
}

func sameSettings(a, b routeSettings) bool {
	return a.timeout == b.timeout && (a.retry == nil) == (b.retry == nil) && (a.retry == nil || *a.retry == *b.retry) &&
		(a.hash == nil) == (b.hash == nil) && (a.hash == nil || *a.hash == *b.hash)
}

func lowerAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ToLower(s)
	}
	return out
}

func sortedKeys[T any](m map[string]T) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
