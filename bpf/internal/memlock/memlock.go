package memlock

import (
	"fmt"
	"reflect"

	"github.com/cilium/ebpf"
)

var (
	mapType  = reflect.TypeFor[*ebpf.Map]()
	progType = reflect.TypeFor[*ebpf.Program]()
)

// Bytes returns the kernel memory of the maps and programs in sets: each a
// pointer to a struct such as bpf2go's generated maps and programs structs,
// whose exported *ebpf.Map and *ebpf.Program fields are summed by their
// memlock, the kernel's own account of the memory each holds (for a map,
// its elements as allocated: all of them for a preallocated hash, the ones
// in use otherwise; for a program, its instructions and JIT image). Nil
// fields count nothing, and so does an object whose memlock is 0 (an empty
// map that allocates on insert; cilium/ebpf cannot tell that from a kernel
// that reports none, which Linux has done since 4.10).
func Bytes(sets ...any) (int64, error) {
	var sum int64
	for _, set := range sets {
		v := reflect.ValueOf(set)
		if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
			return 0, fmt.Errorf("memlock: %T is not a pointer to a struct", set)
		}
		v = v.Elem()
		for i := range v.NumField() {
			f := v.Field(i)
			if !v.Type().Field(i).IsExported() || f.IsNil() {
				continue
			}
			var (
				n   uint64
				err error
			)
			switch f.Type() {
			case mapType:
				var info *ebpf.MapInfo
				if info, err = f.Interface().(*ebpf.Map).Info(); err == nil {
					n, _ = info.Memlock()
				}
			case progType:
				var info *ebpf.ProgramInfo
				if info, err = f.Interface().(*ebpf.Program).Info(); err == nil {
					n, _ = info.Memlock()
				}
			default:
				continue
			}
			name := v.Type().Field(i).Name
			if err != nil {
				return 0, fmt.Errorf("memlock of %s: %w", name, err)
			}
			sum += int64(n)
		}
	}
	return sum, nil
}
