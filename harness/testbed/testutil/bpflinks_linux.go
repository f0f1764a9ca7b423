package testutil

import (
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
)

// BPFLinks returns the ids of every BPF link in the kernel now.
func BPFLinks(t testing.TB) map[link.ID]bool {
	t.Helper()
	ids := map[link.ID]bool{}
	it := new(link.Iterator)
	for it.Next() {
		ids[it.ID] = true
		it.Take().Close()
	}
	if err := it.Err(); err != nil {
		t.Fatalf("iterate BPF links: %v", err)
	}
	return ids
}

// CheckNoNewLinks fails t if a BPF link that was not there before is
// left. A link held by a process that is exiting goes with it, so a new
// link is given a few seconds to go.
func CheckNoNewLinks(t testing.TB, before map[link.ID]bool) {
	t.Helper()
	var left []link.ID
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		left = left[:0]
		for id := range BPFLinks(t) {
			if !before[id] {
				left = append(left, id)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, id := range left {
		t.Errorf("BPF link %d left attached after the run", id)
	}
}
