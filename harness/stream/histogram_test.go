package stream

import (
	"slices"
	"testing"

	"github.com/meshbench/meshbench/harness/results"
)

func TestPercentile(t *testing.T) {
	h := results.Histogram{SignificantFigures: 3, Buckets: []results.Bucket{
		{UpperUS: 10, Count: 50},
		{UpperUS: 20, Count: 40},
		{UpperUS: 100, Count: 9},
		{UpperUS: 5000, Count: 1},
	}}
	for _, tc := range []struct {
		name string
		h    results.Histogram
		q    float64
		want float64
	}{
		{"empty", results.Histogram{}, 0.5, 0},
		{"zero quantile is the lowest bucket", h, 0, 10},
		{"median at the edge of the first bucket", h, 0.5, 10},
		{"just past the first bucket", h, 0.51, 20},
		{"p90", h, 0.9, 20},
		{"p99", h, 0.99, 100},
		{"p999", h, 0.999, 5000},
		{"max", h, 1, 5000},
		{"above one is the max", h, 2, 5000},
		{"single value", results.Histogram{Buckets: []results.Bucket{{UpperUS: 7, Count: 1}}}, 0.99, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percentile(tc.h, tc.q); got != tc.want {
				t.Errorf("Percentile(%v) = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
}

func TestHistogramFromHDR(t *testing.T) {
	h := NewHDR()
	values := []int64{1, 1, 2, 35, 35, 36, 2047, 2048, 2049, 100_000, 100_050, HighestUS}
	for _, v := range values {
		if err := h.RecordValue(v); err != nil {
			t.Fatalf("record %d: %v", v, err)
		}
	}
	sp := HistogramFromHDR(h)
	if sp.SignificantFigures != SignificantFigures {
		t.Errorf("significant figures = %d, want %d", sp.SignificantFigures, SignificantFigures)
	}
	if got := Count(sp); got != int64(len(values)) {
		t.Errorf("count = %d, want %d", got, len(values))
	}
	if !slices.IsSortedFunc(sp.Buckets, func(a, b results.Bucket) int { return int(a.UpperUS - b.UpperUS) }) {
		t.Errorf("buckets not sorted: %v", sp.Buckets)
	}
	for _, b := range sp.Buckets {
		if b.Count == 0 {
			t.Errorf("zero bucket %v", b)
		}
	}
	// Exact below 2048 at 3 significant figures; each value lands in the
	// bucket whose upper bound is its highest equivalent value.
	for _, v := range values {
		found := false
		for _, b := range sp.Buckets {
			if v <= b.UpperUS && h.ValuesAreEquivalent(v, b.UpperUS) {
				found = true
			}
		}
		if !found {
			t.Errorf("value %d has no bucket in %v", v, sp.Buckets)
		}
	}
	if got := sp.Buckets[0]; got != (results.Bucket{UpperUS: 1, Count: 2}) {
		t.Errorf("first bucket = %v, want {1 2}", got)
	}
	// The sparse form reproduces the HDR's percentiles.
	for _, q := range []float64{0.5, 0.9, 0.99, 1} {
		if got, want := Percentile(sp, q), float64(h.ValueAtQuantile(q*100)); got != want {
			t.Errorf("Percentile(%v) = %v, HDR says %v", q, got, want)
		}
	}
	if got := HistogramFromHDR(NewHDR()); len(got.Buckets) != 0 {
		t.Errorf("empty HDR gave buckets %v", got.Buckets)
	}
}

func TestMerge(t *testing.T) {
	a := results.Histogram{SignificantFigures: 3, Buckets: []results.Bucket{{UpperUS: 10, Count: 1}, {UpperUS: 30, Count: 2}}}
	b := results.Histogram{SignificantFigures: 3, Buckets: []results.Bucket{{UpperUS: 20, Count: 4}, {UpperUS: 30, Count: 1}}}
	got := Merge(a, b)
	want := []results.Bucket{{UpperUS: 10, Count: 1}, {UpperUS: 20, Count: 4}, {UpperUS: 30, Count: 3}}
	if !slices.Equal(got.Buckets, want) || got.SignificantFigures != 3 {
		t.Errorf("Merge = %+v, want buckets %v", got, want)
	}
	if got := Merge(); len(got.Buckets) != 0 {
		t.Errorf("Merge() = %v", got)
	}
}
