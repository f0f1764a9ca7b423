package percpu

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// Sum returns slot i of the per-CPU array m as names[i], summed over CPUs.
func Sum(m *ebpf.Map, names []string) (map[string]uint64, error) {
	out := make(map[string]uint64, len(names))
	for i, name := range names {
		var per []uint64
		if err := m.Lookup(uint32(i), &per); err != nil {
			return nil, fmt.Errorf("read counter %s: %w", name, err)
		}
		var sum uint64
		for _, v := range per {
			sum += v
		}
		out[name] = sum
	}
	return out, nil
}
