package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/internal/nsutil"
)

// Counters are the counters of one listener or cluster. In JSON they are
// flat name → value objects.
type Counters struct {
	CxTotal         atomic.Int64
	CxActive        atomic.Int64
	CxConnectFail   atomic.Int64
	RqTotal         atomic.Int64
	Rq2xx           atomic.Int64
	Rq4xx           atomic.Int64
	Rq5xx           atomic.Int64
	RqRetry         atomic.Int64
	RqTimeout       atomic.Int64
	NoRoute         atomic.Int64
	OverflowCx      atomic.Int64
	OverflowPending atomic.Int64
	OverflowRq      atomic.Int64
	OverflowRetry   atomic.Int64
	BytesIn         atomic.Int64
	BytesOut        atomic.Int64
}

func (c *Counters) fields() []struct {
	name string
	v    *atomic.Int64
} {
	return []struct {
		name string
		v    *atomic.Int64
	}{
		{"cx_total", &c.CxTotal}, {"cx_active", &c.CxActive}, {"cx_connect_fail", &c.CxConnectFail},
		{"rq_total", &c.RqTotal}, {"rq_2xx", &c.Rq2xx}, {"rq_4xx", &c.Rq4xx}, {"rq_5xx", &c.Rq5xx},
		{"rq_retry", &c.RqRetry}, {"rq_timeout", &c.RqTimeout}, {"no_route", &c.NoRoute},
		{"overflow_cx", &c.OverflowCx}, {"overflow_pending", &c.OverflowPending},
		{"overflow_rq", &c.OverflowRq}, {"overflow_retry", &c.OverflowRetry},
		{"bytes_in", &c.BytesIn}, {"bytes_out", &c.BytesOut},
	}
}

// Map returns the counters by name (cx_total, rq_2xx, overflow_rq, ...).
func (c *Counters) Map() map[string]int64 {
	m := map[string]int64{}
	for _, f := range c.fields() {
		m[f.name] = f.v.Load()
	}
	return m
}

func (c *Counters) status(code int) {
	switch {
	case code >= 500:
		c.Rq5xx.Add(1)
	case code >= 400:
		c.Rq4xx.Add(1)
	case code >= 200 && code < 300:
		c.Rq2xx.Add(1)
	}
}

// HostCounters are the counters of one endpoint of a cluster, as Envoy's
// per-host statistics: what this proxy sent to that endpoint and how it was
// answered. They let a proof attribute requests to the pod (and node) that
// received them.
type HostCounters struct {
	CxTotal  atomic.Int64
	RqTotal  atomic.Int64
	Rq2xx    atomic.Int64
	RqError  atomic.Int64 // 4xx, 5xx, or no answer
	BytesIn  atomic.Int64 // read from the endpoint
	BytesOut atomic.Int64 // written to the endpoint
}

// Map returns the counters by name (cx_total, rq_total, rq_2xx, rq_error,
// bytes_in, bytes_out).
func (c *HostCounters) Map() map[string]int64 {
	return map[string]int64{
		"cx_total": c.CxTotal.Load(), "rq_total": c.RqTotal.Load(), "rq_2xx": c.Rq2xx.Load(),
		"rq_error": c.RqError.Load(), "bytes_in": c.BytesIn.Load(), "bytes_out": c.BytesOut.Load(),
	}
}

// registry holds every listener's, cluster's and endpoint's counters;
// counters outlive configuration changes.
type registry struct {
	mu        sync.Mutex
	listeners map[string]*Counters
	clusters  map[string]*Counters
	hosts     map[string]map[netip.AddrPort]*HostCounters // by cluster, then address
}

func newRegistry() *registry {
	return &registry{listeners: map[string]*Counters{}, clusters: map[string]*Counters{}, hosts: map[string]map[netip.AddrPort]*HostCounters{}}
}

// host returns the counters of cluster's endpoint addr.
func (r *registry) host(cluster string, addr netip.AddrPort) *HostCounters {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.hosts[cluster]
	if m == nil {
		m = map[netip.AddrPort]*HostCounters{}
		r.hosts[cluster] = m
	}
	c, ok := m[addr]
	if !ok {
		c = &HostCounters{}
		m[addr] = c
	}
	return c
}

func (r *registry) get(m map[string]*Counters, name string) *Counters {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := m[name]
	if !ok {
		c = &Counters{}
		m[name] = c
	}
	return c
}

func (r *registry) listener(name string) *Counters { return r.get(r.listeners, name) }
func (r *registry) cluster(name string) *Counters  { return r.get(r.clusters, name) }

// Stats is what the admin endpoint's /stats serves.
type Stats struct {
	// Version is the configuration version last applied, per resource type
	// ("listeners", "clusters", "endpoints", "routes").
	Version   map[string]string           `json:"version"`
	Listeners map[string]map[string]int64 `json:"listeners"`
	Clusters  map[string]map[string]int64 `json:"clusters"`
	// Hosts are the per-endpoint counters, by cluster and then endpoint
	// address ("198.18.1.10:8080"), of the endpoints that counted anything:
	// a missing one has counted nothing. (Every sidecar has every
	// endpoint of every service; at 512 pods, their zeros were 2.6 million
	// counters to serve and decode at each read.)
	Hosts map[string]map[string]map[string]int64 `json:"hosts,omitempty"`
	// Engine are an engine's figures of itself, when it keeps any (the
	// haproxy engine: endpoint changes applied through haproxy's runtime
	// API and the slowest one's time, restarts, settings not rendered).
	Engine map[string]float64 `json:"engine,omitempty"`
	// Notes are the settings of the xDS configuration the engine does not
	// apply as configured, in its own words, distinct and sorted (the
	// haproxy engine's, for settings HAProxy has no equivalent for); the
	// builtin engine refuses such a configuration instead, and has none.
	Notes []string `json:"notes,omitempty"`
}

// counted reports whether any counter of m is not zero.
func counted(m map[string]int64) bool {
	for _, v := range m {
		if v != 0 {
			return true
		}
	}
	return false
}

func (r *registry) snapshot(version map[string]string) Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Stats{Version: version, Listeners: map[string]map[string]int64{}, Clusters: map[string]map[string]int64{}}
	for n, c := range r.listeners {
		s.Listeners[n] = c.Map()
	}
	for n, c := range r.clusters {
		s.Clusters[n] = c.Map()
	}
	for n, hs := range r.hosts {
		if s.Hosts == nil {
			s.Hosts = map[string]map[string]map[string]int64{}
		}
		m := map[string]map[string]int64{}
		for a, c := range hs {
			if cm := c.Map(); counted(cm) {
				m[a.String()] = cm
			}
		}
		s.Hosts[n] = m
	}
	return s
}

// Flatten returns the counters as "listener.<name>.<counter>",
// "cluster.<name>.<counter>" and "host.<cluster>.<addr>.<counter>", the
// form datapaths report.
func (s Stats) Flatten() map[string]int64 {
	out := map[string]int64{}
	for n, m := range s.Listeners {
		for k, v := range m {
			out["listener."+n+"."+k] = v
		}
	}
	for n, m := range s.Clusters {
		for k, v := range m {
			out["cluster."+n+"."+k] = v
		}
	}
	for n, hs := range s.Hosts {
		for a, m := range hs {
			for k, v := range m {
				out["host."+n+"."+a+"."+k] = v
			}
		}
	}
	for k, v := range s.Engine {
		out[EngineCounterPrefix+k] = int64(v)
	}
	return out
}

// EngineCounterPrefix prefixes an engine's own figures (Stats.Engine) in
// the flat counters.
const EngineCounterPrefix = "engine."

// HostTotals returns, for every endpoint address, its counters summed over
// the clusters that reach it (cx_total, rq_total, rq_2xx, rq_error,
// bytes_in, bytes_out).
func (s Stats) HostTotals() map[netip.AddrPort]map[string]int64 {
	out := map[netip.AddrPort]map[string]int64{}
	for _, hs := range s.Hosts {
		for a, m := range hs {
			ap, err := netip.ParseAddrPort(a)
			if err != nil {
				continue
			}
			t := out[ap]
			if t == nil {
				t = map[string]int64{}
				out[ap] = t
			}
			for k, v := range m {
				t[k] += v
			}
		}
	}
	return out
}

// WriteText writes the flattened counters as sorted "name: value" lines,
// as Envoy's /stats does.
func (s Stats) WriteText(w io.Writer) error {
	flat := s.Flatten()
	keys := make([]string, 0, len(flat))
	for k := range flat {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for k, v := range s.Version {
		fmt.Fprintf(&b, "version.%s: %s\n", k, v)
	}
	for _, k := range keys {
		fmt.Fprintf(&b, "%s: %d\n", k, flat[k])
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// ParseStats decodes the JSON form of /stats.
func ParseStats(r io.Reader) (Stats, error) {
	var s Stats
	if err := json.NewDecoder(r).Decode(&s); err != nil {
		return Stats{}, fmt.Errorf("decode proxy stats: %w", err)
	}
	return s, nil
}

// ReadStats reads a builtin proxy's /stats from its admin address (for
// example DefaultAdminAddr) inside ns (a zero Netns: this process's
// namespace).
func ReadStats(ctx context.Context, ns nsutil.Netns, adminAddr string) (Stats, error) {
	var s Stats
	if ns.Path == "" {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+adminAddr+"/stats", nil)
		if err != nil {
			return Stats{}, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return Stats{}, fmt.Errorf("read proxy stats: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return Stats{}, fmt.Errorf("read proxy stats: %s", resp.Status)
		}
		return ParseStats(resp.Body)
	}
	if err := datapaths.GetJSON(ctx, ns, adminAddr, "/stats", &s); err != nil {
		return Stats{}, fmt.Errorf("read proxy stats in %s: %w", ns, err)
	}
	return s, nil
}

// Outcomes are a listener's (or an endpoint's) requests by outcome, and its
// bytes.
type Outcomes struct {
	Rq, Rq2xx, RqError int64
	// BytesIn and BytesOut: read from and written to the peer.
	BytesIn, BytesOut int64
}

// View is what a proof of path needs of one proxy: its outbound and inbound
// listeners' outcomes, what it sent to each endpoint address, and its
// retries.
type View struct {
	Outbound, Inbound Outcomes
	// Sent holds, by endpoint IP (ports summed), the requests this proxy
	// sent there and how they were answered; nil when the engine keeps no
	// per-endpoint counters.
	Sent    map[netip.Addr]Outcomes
	Retries int64
	// LocalConns counts the connections opened to the local application:
	// by the clusters whose endpoints are on loopback (a sidecar's inbound
	// clusters).
	LocalConns int64
}

// View returns the proof's view of a builtin proxy's counters; outbound and
// inbound name its listeners.
func (s Stats) View(outbound, inbound string) View {
	listener := func(name string) Outcomes {
		m := s.Listeners[name]
		return Outcomes{Rq: m["rq_total"], Rq2xx: m["rq_2xx"], RqError: m["rq_4xx"] + m["rq_5xx"], BytesIn: m["bytes_in"], BytesOut: m["bytes_out"]}
	}
	v := View{Outbound: listener(outbound), Inbound: listener(inbound), Sent: map[netip.Addr]Outcomes{}}
	for a, m := range s.HostTotals() {
		if a.Addr().IsLoopback() {
			v.LocalConns += m["cx_total"]
		}
		o := v.Sent[a.Addr()]
		o.Rq += m["rq_total"]
		o.Rq2xx += m["rq_2xx"]
		o.RqError += m["rq_error"]
		o.BytesIn += m["bytes_in"]
		o.BytesOut += m["bytes_out"]
		v.Sent[a.Addr()] = o
	}
	for _, m := range s.Clusters {
		v.Retries += m["rq_retry"]
	}
	return v
}

// EnvoyView returns the proof's view of Envoy's text /stats (the HTTP
// connection managers "outbound" and "inbound"). Envoy keeps per-endpoint
// counters only at /clusters, which meshbench does not read: Sent is nil.
func EnvoyView(st map[string]int64) View {
	hcm := func(prefix string) Outcomes {
		p := "http." + prefix + "."
		return Outcomes{
			Rq: st[p+"downstream_rq_total"], Rq2xx: st[p+"downstream_rq_2xx"],
			RqError: st[p+"downstream_rq_4xx"] + st[p+"downstream_rq_5xx"],
			BytesIn: st[p+"downstream_cx_rx_bytes_total"], BytesOut: st[p+"downstream_cx_tx_bytes_total"],
		}
	}
	v := View{Outbound: hcm("outbound"), Inbound: hcm("inbound")}
	for k, n := range st {
		if strings.HasPrefix(k, "cluster.") && strings.HasSuffix(k, ".upstream_rq_retry") {
			v.Retries += n
		}
	}
	return v
}
