package reports

import (
	"math"
	"testing"
)

func TestBenjaminiHochberg(t *testing.T) {
	tests := []struct {
		name string
		p    []float64
		want []float64
	}{
		{"empty", nil, []float64{}},
		{"one", []float64{0.03}, []float64{0.03}},
		// Sorted: 0.005·4/1 = 0.02, 0.01·4/2 = 0.02, 0.03·4/3 = 0.04,
		// 0.04·4/4 = 0.04; back in input order.
		{"four", []float64{0.01, 0.04, 0.03, 0.005}, []float64{0.02, 0.04, 0.04, 0.02}},
		// The step-up: a larger p-value lowers the q of a smaller one
		// (0.02·3/2 = 0.03 > 0.021·3/3).
		{"step-up", []float64{0.02, 0.021, 0.0001}, []float64{0.021, 0.021, 0.0003}},
		{"capped at 1", []float64{0.9, 0.8}, []float64{0.9, 0.9}},
		{"ties", []float64{0.01, 0.01, 0.01}, []float64{0.01, 0.01, 0.01}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := benjaminiHochberg(tc.p)
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if math.Abs(got[i]-tc.want[i]) > 1e-12 {
					t.Errorf("q = %v, want %v", got, tc.want)
					break
				}
			}
		})
	}
}

func TestWorseP(t *testing.T) {
	base := []float64{100, 103, 98, 101, 99}
	tests := []struct {
		name         string
		base, new    []float64
		higher       bool
		wantTestable bool
		wantBelow    float64 // p < wantBelow (0: no bound)
		wantAbove    float64 // p > wantAbove
	}{
		{"30% slower", base, scale(base, 1.3), false, true, 1e-6, 0},
		{"30% faster is not worse", base, scale(base, 0.7), false, true, 0, 0.999},
		{"30% fewer req/s is worse when higher is better", base, scale(base, 0.7), true, true, 1e-6, 0},
		{"the same", base, base, false, true, 0, 0.49},
		{"an outlier widens the variance", base, []float64{99, 101, 100, 102, 700}, false, true, 0, 0.05},
		{"constant and equal: nothing to test", []float64{1, 1, 1}, []float64{1, 1, 1}, true, false, 0, 0.99},
		{"constant, all worse", []float64{1, 1, 1}, []float64{0.9, 0.9, 0.9}, true, true, 1e-9, 0},
		{"one value a side: nothing to test", []float64{1}, []float64{2}, false, false, 0, 0.99},
		{"zeros fall back to raw values", []float64{0, 1, 2, 1}, []float64{5, 6, 7, 6}, false, true, 0.001, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, ok := worseP(tc.base, tc.new, tc.higher)
			if ok != tc.wantTestable {
				t.Errorf("testable %v, want %v", ok, tc.wantTestable)
			}
			if tc.wantBelow > 0 && !(p < tc.wantBelow) || !(p > tc.wantAbove) && tc.wantAbove > 0 || p < 0 || p > 1 {
				t.Errorf("p = %g, want in (%g, %g)", p, tc.wantAbove, tc.wantBelow)
			}
		})
	}
}

func TestLowerSignificantly(t *testing.T) {
	tests := []struct {
		name string
		a, b []float64
		want bool
	}{
		{"3 against 3, apart", []float64{1, 2, 3}, []float64{4, 5, 6}, true},
		{"3 against 3, touching", []float64{1, 2, 4}, []float64{4, 5, 6}, false},
		{"3 against 3, overlapping", []float64{1, 5, 3}, []float64{4, 6, 7}, false},
		{"2 against 2 never", []float64{1, 2}, []float64{10, 20}, false},
		{"the other way", []float64{4, 5, 6}, []float64{1, 2, 3}, false},
		{"5 against 5, one overlap: U test p=0.016", []float64{1, 2, 3, 4, 6}, []float64{5, 7, 8, 9, 10}, true},
		{"5 against 5, mixed", []float64{1, 3, 5, 7, 9}, []float64{2, 4, 6, 8, 10}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := lowerSignificantly(tc.a, tc.b, 0.05); got != tc.want {
				t.Errorf("lowerSignificantly(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
			}
		})
	}
}
