package stream

import (
	"cmp"
	"math"
	"slices"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/meshbench/meshbench/harness/results"
)

// The range and precision of every latency histogram, in microseconds.
const (
	LowestUS           = 1
	HighestUS          = 60_000_000 // 60 s
	SignificantFigures = 3
)

// NewHDR returns an empty HDR histogram of microseconds with the project's
// range and precision.
func NewHDR() *hdrhistogram.Histogram {
	return hdrhistogram.New(LowestUS, HighestUS, SignificantFigures)
}

// HistogramFromHDR returns h in sparse form: one bucket per distinct
// recorded value range, whose upper bound is the highest value equivalent
// to it at h's precision, with only nonzero buckets, in ascending order.
func HistogramFromHDR(h *hdrhistogram.Histogram) results.Histogram {
	out := results.Histogram{SignificantFigures: int(h.SignificantFigures())}
	if h.TotalCount() == 0 {
		return out
	}
	for _, bar := range h.Distribution() {
		if bar.Count != 0 {
			out.Buckets = append(out.Buckets, results.Bucket{UpperUS: bar.To, Count: bar.Count})
		}
	}
	return out
}

// Count returns the number of values in h.
func Count(h results.Histogram) int64 {
	var n int64
	for _, b := range h.Buckets {
		n += b.Count
	}
	return n
}

// Percentile returns the q-quantile (0 ≤ q ≤ 1) of h by nearest rank: the
// upper bound of the first bucket at which the cumulative count reaches
// ⌈q·total⌉ (at least 1). It returns 0 for an empty histogram; q ≤ 0 gives
// the lowest bucket and q ≥ 1 the highest.
func Percentile(h results.Histogram, q float64) float64 {
	total := Count(h)
	if total == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(total)))
	rank = max(1, min(rank, total))
	var cum int64
	for _, b := range h.Buckets {
		cum += b.Count
		if cum >= rank {
			return float64(b.UpperUS)
		}
	}
	return float64(h.Buckets[len(h.Buckets)-1].UpperUS)
}

// Merge returns the sum of hs: counts of buckets with the same upper bound
// are added. Histograms of the same precision merge exactly.
func Merge(hs ...results.Histogram) results.Histogram {
	var out results.Histogram
	counts := map[int64]int64{}
	for _, h := range hs {
		out.SignificantFigures = max(out.SignificantFigures, h.SignificantFigures)
		for _, b := range h.Buckets {
			counts[b.UpperUS] += b.Count
		}
	}
	for le, n := range counts {
		if n != 0 {
			out.Buckets = append(out.Buckets, results.Bucket{UpperUS: le, Count: n})
		}
	}
	slices.SortFunc(out.Buckets, func(a, b results.Bucket) int { return cmp.Compare(a.UpperUS, b.UpperUS) })
	return out
}
