package maglev

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
)

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("198.18.0.%d:8080", 10+i)
	}
	return out
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name     string
		backends []string
		size     int
		noBack   bool
	}{
		{name: "no backends", size: 251, noBack: true},
		{name: "not prime", backends: names(3), size: 100},
		{name: "too small", backends: names(3), size: 3},
		{name: "duplicate", backends: []string{"a", "a"}, size: 251},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.backends, tt.size)
			if err == nil {
				t.Fatal("New succeeded")
			}
			if tt.noBack != errors.Is(err, ErrNoBackends) {
				t.Errorf("errors.Is(ErrNoBackends) = %v for %v", !tt.noBack, err)
			}
		})
	}
}

// Every backend owns close to size/n entries: the paper's bound is a few
// percent of imbalance for size ≫ n.
func TestEvenSpread(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7, 20} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			tab, err := New(names(n), DefaultSize)
			if err != nil {
				t.Fatal(err)
			}
			count := make([]int, n)
			for i := range tab.Size() {
				count[tab.Lookup(uint64(i))]++
			}
			want := float64(DefaultSize) / float64(n)
			for i, c := range count {
				if d := (float64(c) - want) / want; d > 0.05 || d < -0.05 {
					t.Errorf("backend %d owns %d entries, want %.0f ± 5%%", i, c, want)
				}
			}
		})
	}
}

// Removing one of n backends moves only the keys it owned, plus a small
// fraction: that is what keeps connections on their backend.
func TestMinimalDisruption(t *testing.T) {
	all := names(10)
	before, err := New(all, DefaultSize)
	if err != nil {
		t.Fatal(err)
	}
	after, err := New(append(append([]string{}, all[:4]...), all[5:]...), DefaultSize)
	if err != nil {
		t.Fatal(err)
	}
	moved, keys := 0, 100000
	for k := range keys {
		h := HashTuple(6, [4]byte{198, 18, 0, 10}, [4]byte{198, 19, 128, 1}, uint16(k), 8080)
		b, a := before.Backend(h), after.Backend(h)
		if b == all[4] {
			continue // had to move
		}
		if a != b {
			moved++
		}
	}
	if frac := float64(moved) / float64(keys); frac > 0.05 {
		t.Errorf("%.1f%% of keys not on the removed backend moved, want < 5%%", 100*frac)
	}
}

func TestDeterministic(t *testing.T) {
	a, _ := New(names(5), 251)
	b, _ := New(names(5), 251)
	for i := range 251 {
		if a.Lookup(uint64(i)) != b.Lookup(uint64(i)) {
			t.Fatalf("entry %d differs between two builds", i)
		}
	}
	src := netip.MustParseAddrPort("198.18.0.10:40000")
	dst := netip.MustParseAddrPort("198.19.128.1:8080")
	if HashAddrPorts(6, src, dst) != HashTuple(6, src.Addr().As4(), dst.Addr().As4(), 40000, 8080) {
		t.Error("HashAddrPorts != HashTuple")
	}
	if HashAddrPorts(6, src, dst) == HashAddrPorts(17, src, dst) {
		t.Error("protocol does not change the hash")
	}
}
