//go:build !linux

package doctor

import (
	"context"
	"runtime"
)

// Check reports every feature absent: meshbench's testbed needs Linux.
func Check(ctx context.Context, opts Options) Report {
	var r Report
	r.Kernel = runtime.GOOS
	for _, s := range []struct{ name, group string }{
		{FeatRoot, GroupHost}, {FeatNetns, GroupHost},
	} {
		r.Features = append(r.Features, Feature{Name: s.name, Group: s.group, Detail: "not probed: meshbench needs Linux"})
	}
	r.Requirements = evaluate(r.Features)
	return r
}
