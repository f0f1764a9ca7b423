package maglev

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math/big"
	"net/netip"
)

// DefaultSize is the default table size: a prime well above 100 × the number
// of backends a service has here, as the paper advises.
const DefaultSize = 65537

// ErrNoBackends is returned by New when it is given no backends.
var ErrNoBackends = errors.New("maglev: no backends")

// Table maps hashes to backend indexes.
type Table struct {
	entry    []uint32
	backends []string
}

// New builds the table for backends, named by stable strings (for example
// "198.18.0.11:8080"), with size entries; size must be a prime larger than
// the number of backends. The same names in the same order always give the
// same table, in every process.
func New(backends []string, size int) (*Table, error) {
	if len(backends) == 0 {
		return nil, ErrNoBackends
	}
	if size <= len(backends) || !big.NewInt(int64(size)).ProbablyPrime(20) {
		return nil, fmt.Errorf("maglev: table size %d must be a prime above the %d backends", size, len(backends))
	}
	seen := make(map[string]bool, len(backends))
	for _, b := range backends {
		if seen[b] {
			return nil, fmt.Errorf("maglev: backend %q listed twice", b)
		}
		seen[b] = true
	}
	m := uint64(size)
	n := len(backends)
	offset := make([]uint64, n)
	skip := make([]uint64, n)
	next := make([]uint64, n)
	for i, b := range backends {
		offset[i] = hashString(b, 0xcbf29ce484222325) % m
		skip[i] = hashString(b, 0x9e3779b97f4a7c15)%(m-1) + 1
	}
	const empty = ^uint32(0)
	entry := make([]uint32, size)
	for i := range entry {
		entry[i] = empty
	}
	filled := 0
	for {
		for i := range n {
			c := (offset[i] + next[i]*skip[i]) % m
			for entry[c] != empty {
				next[i]++
				c = (offset[i] + next[i]*skip[i]) % m
			}
			entry[c] = uint32(i)
			next[i]++
			filled++
			if filled == size {
				return &Table{entry: entry, backends: append([]string(nil), backends...)}, nil
			}
		}
	}
}

// Lookup returns the index, in the backends given to New, of the backend
// for hash.
func (t *Table) Lookup(hash uint64) int { return int(t.entry[hash%uint64(len(t.entry))]) }

// Backend returns the name of the backend for hash.
func (t *Table) Backend(hash uint64) string { return t.backends[t.Lookup(hash)] }

// Size returns the number of table entries.
func (t *Table) Size() int { return len(t.entry) }

// Backends returns the number of backends.
func (t *Table) Backends() int { return len(t.backends) }

// hashString is FNV-1a of s, its basis mixed with seed so that the two
// permutation hashes are independent.
func hashString(s string, seed uint64) uint64 {
	h := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], seed)
	_, _ = h.Write(b[:])
	_, _ = h.Write([]byte(s))
	return mix(h.Sum64())
}

// mix is the splitmix64 finalizer: every input bit affects every output
// bit.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// HashKey hashes an arbitrary key (a header's value, a source address) for
// Lookup: FNV-1a, spread with the same finalizer as the tuple hash.
func HashKey(key []byte) uint64 {
	h := fnv.New64a()
	_, _ = h.Write(key)
	return mix(h.Sum64())
}

// HashTuple hashes a connection's 5-tuple (protocol number, addresses and
// ports) for Lookup. It is the same in every process, so every node picks
// the same backend for a connection.
func HashTuple(proto uint8, src, dst [4]byte, sport, dport uint16) uint64 {
	x := uint64(binary.BigEndian.Uint32(src[:]))<<32 | uint64(binary.BigEndian.Uint32(dst[:]))
	y := uint64(sport)<<32 | uint64(dport)<<16 | uint64(proto)
	return mix(mix(x) ^ y)
}

// HashAddrPorts is HashTuple for netip values (IPv4 only: other addresses
// hash as 0.0.0.0).
func HashAddrPorts(proto uint8, src, dst netip.AddrPort) uint64 {
	var s, d [4]byte
	if src.Addr().Is4() {
		s = src.Addr().As4()
	}
	if dst.Addr().Is4() {
		d = dst.Addr().As4()
	}
	return HashTuple(proto, s, d, src.Port(), dst.Port())
}
