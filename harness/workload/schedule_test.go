package workload

import (
	"testing"
	"time"
)

func TestScheduleIntended(t *testing.T) {
	began := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		rate int
		seq  uint64
		want time.Duration // after began
	}{
		{"first tick is one interval in", 1000, 0, time.Millisecond},
		{"second tick", 1000, 1, 2 * time.Millisecond},
		{"one second of ticks", 1000, 999, time.Second},
		{"rate 500", 500, 249, 500 * time.Millisecond},
		{"rate 1", 1, 0, time.Second},
		// vegeta's interval is 1s/rate in integer nanoseconds.
		{"rate 3 truncates the interval", 3, 2, 3 * 333333333 * time.Nanosecond},
		{"rate 7", 7, 6, 7 * 142857142 * time.Nanosecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSchedule(began, tc.rate, 0, time.Second, time.Second)
			if got := s.intended(tc.seq).Sub(began); got != tc.want {
				t.Errorf("intended(%d) = began+%s, want began+%s", tc.seq, got, tc.want)
			}
		})
	}
}

func TestScheduleLatency(t *testing.T) {
	began := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	s := newSchedule(began, 100, 0, time.Second, time.Second) // interval 10 ms
	for _, tc := range []struct {
		name string
		seq  uint64
		end  time.Duration // after began
		want time.Duration
	}{
		{"on time", 0, 10*time.Millisecond + 50*time.Microsecond, 50 * time.Microsecond},
		// A request sent late (a stalled client or pacer) carries the delay:
		// tick 4 was due at 50 ms, answered at 130 ms.
		{"sent late carries the wait", 4, 130 * time.Millisecond, 80 * time.Millisecond},
		{"exactly at the intended time", 9, 100 * time.Millisecond, 0},
		{"ended before its intended time clamps at zero", 9, 99 * time.Millisecond, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := s.latency(tc.seq, began.Add(tc.end)); got != tc.want {
				t.Errorf("latency = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestScheduleWindows(t *testing.T) {
	for _, tc := range []struct {
		name                     string
		rate                     int
		warmup, duration, window time.Duration
		wantWindows              int
		wantMeasured             int64 // requests in the measured window
		firstMeasured            uint64
	}{
		{"500/s, 0.5 s warm-up, 2 s", 500, 500 * time.Millisecond, 2 * time.Second, time.Second, 2, 1000, 250},
		{"no warm-up", 100, 0, time.Second, time.Second, 1, 100, 0},
		{"partial last window", 10, 0, 2500 * time.Millisecond, time.Second, 3, 25, 0},
		{"windows narrower than the interval", 2, time.Second, 2 * time.Second, 100 * time.Millisecond, 20, 4, 2},
		{"rate 3 with its truncated interval", 3, time.Second, 3 * time.Second, time.Second, 3, 9, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSchedule(time.Time{}, tc.rate, tc.warmup, tc.duration, tc.window)
			if got := s.windows(); got != tc.wantWindows {
				t.Fatalf("windows() = %d, want %d", got, tc.wantWindows)
			}
			// Every tick the pacer sends (k·interval ≤ warmup+duration) is
			// either warm-up or in exactly one window, and expected()
			// agrees with counting them one by one.
			counts := make([]int64, s.windows())
			var measured int64
			first := uint64(0)
			for seq := uint64(0); time.Duration(seq+1)*s.interval <= tc.warmup+tc.duration; seq++ {
				if !s.measured(seq) {
					if s.offset(seq) > 0 {
						t.Fatalf("seq %d after the warm-up is not measured", seq)
					}
					continue
				}
				if measured == 0 {
					first = seq
				}
				measured++
				counts[s.windowOf(seq)]++
			}
			if measured != tc.wantMeasured || first != tc.firstMeasured {
				t.Errorf("measured %d from seq %d, want %d from seq %d", measured, first, tc.wantMeasured, tc.firstMeasured)
			}
			var sum int64
			for i, c := range counts {
				if e := s.expected(i); e != c {
					t.Errorf("expected(%d) = %d, counted %d", i, e, c)
				}
				sum += c
			}
			if sum != measured {
				t.Errorf("windows hold %d, measured %d", sum, measured)
			}
		})
	}
}
