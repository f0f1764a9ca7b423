package proxy

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/meshbench/meshbench/datapaths/maglev"
)

func hosts(n int) []*host {
	out := make([]*host, n)
	for i := range out {
		out[i] = &host{addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 1, byte(i + 1)}), 8080)}
	}
	return out
}

func TestLBPolicies(t *testing.T) {
	t.Run("round robin rotates exactly", func(t *testing.T) {
		hs := hosts(4)
		p := newPicker(lbRoundRobin, hs)
		for round := 0; round < 3; round++ {
			for i := range hs {
				if got := p.pick(nil, false); got != hs[i] {
					t.Fatalf("round %d pick %d = %v, want %v", round, i, got.addr, hs[i].addr)
				}
			}
		}
	})
	t.Run("least request prefers the idle host", func(t *testing.T) {
		hs := hosts(2)
		hs[0].active.Store(5)
		p := newPicker(lbLeastRequest, hs)
		for i := 0; i < 1000; i++ {
			if got := p.pick(nil, false); got != hs[1] {
				t.Fatalf("pick %d chose the busy host", i)
			}
		}
		// Of two distinct choices among three hosts, one busy, at least one
		// is idle: P2C never picks the busy one.
		hs = hosts(3)
		hs[2].active.Store(3)
		p = newPicker(lbLeastRequest, hs)
		for i := 0; i < 1000; i++ {
			if got := p.pick(nil, false); got == hs[2] {
				t.Fatalf("pick %d chose the busy host", i)
			}
		}
	})
	t.Run("maglev is consistent and disrupts little", func(t *testing.T) {
		hs := hosts(10)
		p := newPicker(lbMaglev, hs)
		p2 := newPicker(lbMaglev, hosts(10)) // a second proxy: same table
		const keys = 20000
		before := make([]netip.AddrPort, keys)
		counts := map[netip.AddrPort]int{}
		for k := 0; k < keys; k++ {
			key := []byte(fmt.Sprintf("user-%d", k))
			a, b := p.pick(key, true), p.pick(key, true)
			if a != b || a.addr != p2.pick(key, true).addr {
				t.Fatalf("key %d maps to %v, %v and %v", k, a.addr, b.addr, p2.pick(key, true).addr)
			}
			before[k] = a.addr
			counts[a.addr]++
		}
		for a, n := range counts {
			if n < keys/10/2 || n > keys/10*2 {
				t.Errorf("host %v got %d of %d keys", a, n, keys)
			}
		}
		removed := hs[3].addr
		p3 := newPicker(lbMaglev, append(append([]*host{}, hs[:3]...), hs[4:]...))
		moved := 0
		for k := 0; k < keys; k++ {
			after := p3.pick([]byte(fmt.Sprintf("user-%d", k)), true).addr
			if after == removed {
				t.Fatalf("key %d still maps to the removed host", k)
			}
			if before[k] != removed && after != before[k] {
				moved++
			}
		}
		// Maglev moves few keys of the remaining hosts (the paper: ~1-2%).
		if frac := float64(moved) / keys; frac > 0.05 {
			t.Errorf("%.1f%% of the keys of remaining hosts moved", 100*frac)
		}
		t.Logf("keys of remaining hosts moved on removal: %d of %d", moved, keys)
	})
	// The AF_XDP forwarder builds its table with the same package from the
	// same "ip:port" names (datapaths/afxdp's TestMaglevSharedTable): for
	// the same hash both pick the same backend.
	t.Run("maglev is the shared table", func(t *testing.T) {
		hs := hosts(7)
		p := newPicker(lbMaglev, hs)
		names := make([]string, len(hs))
		for i, h := range hs {
			names[i] = h.addr.String()
		}
		table, err := maglev.New(names, maglev.DefaultSize)
		if err != nil {
			t.Fatal(err)
		}
		for k := range 5000 {
			key := []byte(fmt.Sprintf("key-%d", k))
			if got, want := p.pick(key, true).addr.String(), table.Backend(maglev.HashKey(key)); got != want {
				t.Fatalf("key %q: proxy picked %s, the shared table %s", key, got, want)
			}
		}
	})
	t.Run("random is roughly uniform", func(t *testing.T) {
		hs := hosts(4)
		p := newPicker(lbRandom, hs)
		counts := map[*host]int{}
		const n = 40000
		for i := 0; i < n; i++ {
			counts[p.pick(nil, false)]++
		}
		for _, h := range hs {
			if c := counts[h]; c < n/4*8/10 || c > n/4*12/10 {
				t.Errorf("host %v got %d of %d", h.addr, c, n)
			}
		}
	})
	t.Run("no hosts", func(t *testing.T) {
		for _, k := range []lbKind{lbRoundRobin, lbLeastRequest, lbMaglev, lbRandom} {
			if newPicker(k, nil).pick([]byte("x"), true) != nil {
				t.Errorf("policy %d picked from no hosts", k)
			}
		}
	})
}
