package proxy

import (
	"math/rand/v2"
	"sync/atomic"

	"github.com/meshbench/meshbench/datapaths/maglev"
)

// picker picks an endpoint of a cluster's healthy endpoints. A picker is
// built for one endpoint set and never changes.
type picker struct {
	kind  lbKind
	hosts []*host
	rr    atomic.Uint64
	table *maglev.Table // Maglev: indexes into hosts
}

func newPicker(kind lbKind, hosts []*host) *picker {
	p := &picker{kind: kind, hosts: hosts}
	if kind == lbMaglev && len(hosts) > 0 {
		names := make([]string, len(hosts))
		for i, h := range hosts {
			names[i] = h.addr.String()
		}
		// Envoy's default table size, and the AF_XDP forwarder's: the same
		// endpoints in the same order give the same table in both.
		t, err := maglev.New(names, maglev.DefaultSize)
		if err != nil {
			// Only duplicate addresses can fail here: fall back to random.
			p.kind = lbRandom
		}
		p.table = t
	}
	return p
}

// pick returns a host, or nil when there is none. key is the hash key of
// Maglev (hasKey false: no key, pick at random).
func (p *picker) pick(key []byte, hasKey bool) *host {
	n := len(p.hosts)
	if n == 0 {
		return nil
	}
	switch p.kind {
	case lbRoundRobin:
		return p.hosts[(p.rr.Add(1)-1)%uint64(n)]
	case lbLeastRequest:
		if n == 1 {
			return p.hosts[0]
		}
		i := rand.IntN(n)
		j := rand.IntN(n - 1)
		if j >= i {
			j++
		}
		a, b := p.hosts[i], p.hosts[j]
		if b.active.Load() < a.active.Load() {
			return b
		}
		return a
	case lbMaglev:
		if !hasKey {
			return p.hosts[rand.IntN(n)]
		}
		return p.hosts[p.table.Lookup(maglev.HashKey(key))]
	default:
		return p.hosts[rand.IntN(n)]
	}
}
