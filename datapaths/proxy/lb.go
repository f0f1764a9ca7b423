package proxy

import (
	"hash/fnv"
	"math/rand/v2"
	"sync/atomic"
)

// maglevTableSize is Envoy's default Maglev table size (a prime).
const maglevTableSize = 65537

// picker picks an endpoint of a cluster's healthy endpoints. A picker is
// built for one endpoint set and never changes.
type picker struct {
	kind  lbKind
	hosts []*host
	rr    atomic.Uint64
	table []int32 // Maglev lookup table: index into hosts
}

func newPicker(kind lbKind, hosts []*host) *picker {
	p := &picker{kind: kind, hosts: hosts}
	if kind == lbMaglev && len(hosts) > 0 {
		names := make([]string, len(hosts))
		for i, h := range hosts {
			names[i] = h.addr.String()
		}
		p.table = maglevTable(names, maglevTableSize)
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
		return p.hosts[p.table[hashKey(key)%uint64(len(p.table))]]
	default:
		return p.hosts[rand.IntN(n)]
	}
}

func hashKey(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return mix(h.Sum64())
}

// mix is a 64-bit finalizer (splitmix64) that spreads FNV's output.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// maglevTable builds the lookup table of Maglev (Eisenbud et al., NSDI
// 2016, section 3.4): each backend fills the next free slot of its own
// permutation of the table in turn, so that every backend gets about M/N
// slots and removing one moves only its own slots.
func maglevTable(names []string, m int) []int32 {
	n := len(names)
	offset := make([]uint64, n)
	skip := make([]uint64, n)
	next := make([]uint64, n)
	for i, name := range names {
		h := hashKey([]byte(name))
		offset[i] = h % uint64(m)
		skip[i] = mix(h^0x9e3779b97f4a7c15)%uint64(m-1) + 1
	}
	table := make([]int32, m)
	for i := range table {
		table[i] = -1
	}
	filled := 0
	for filled < m {
		for i := 0; i < n && filled < m; i++ {
			c := (offset[i] + next[i]*skip[i]) % uint64(m)
			for table[c] >= 0 {
				next[i]++
				c = (offset[i] + next[i]*skip[i]) % uint64(m)
			}
			table[c] = int32(i)
			next[i]++
			filled++
		}
	}
	return table
}
