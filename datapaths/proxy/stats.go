package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/meshbench/meshbench/datapaths"
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

// registry holds every listener's and cluster's counters; counters outlive
// configuration changes.
type registry struct {
	mu        sync.Mutex
	listeners map[string]*Counters
	clusters  map[string]*Counters
}

func newRegistry() *registry {
	return &registry{listeners: map[string]*Counters{}, clusters: map[string]*Counters{}}
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
	return s
}

// Flatten returns the counters as "listener.<name>.<counter>" and
// "cluster.<name>.<counter>", the form datapaths report.
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
// example DefaultAdminAddr) inside the network namespace at netnsPath ("":
// this process's namespace).
func ReadStats(ctx context.Context, netnsPath, adminAddr string) (Stats, error) {
	var s Stats
	if netnsPath == "" {
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
	if err := datapaths.GetJSON(ctx, netnsPath, adminAddr, "/stats", &s); err != nil {
		return Stats{}, fmt.Errorf("read proxy stats in %s: %w", netnsPath, err)
	}
	return s, nil
}
