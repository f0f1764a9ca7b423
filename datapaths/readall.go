package datapaths

import (
	"context"

	"golang.org/x/sync/errgroup"
)

// ReadConcurrency is how many proxies' or servers' counters a datapath
// reads at once: enough that a cluster of 512 pods is read within a few
// seconds (one after another, their reads outlasted the read after a
// step), few enough not to crowd the machine's CPUs.
const ReadConcurrency = 16

// ReadAll calls read for every item, ReadConcurrency at a time, and
// returns the results in the items' order, or the first error (the other
// reads are then cancelled).
func ReadAll[T, R any](ctx context.Context, items []T, read func(context.Context, T) (R, error)) ([]R, error) {
	out := make([]R, len(items))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(ReadConcurrency)
	for i, it := range items {
		g.Go(func() error {
			r, err := read(gctx, it)
			out[i] = r
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}
