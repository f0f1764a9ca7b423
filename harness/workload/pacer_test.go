package workload

import (
	"testing"
	"time"
)

func TestPrecisePacerMargin(t *testing.T) {
	for _, tc := range []struct {
		name string
		rate int
		spin time.Duration
		want time.Duration
	}{
		{"default", 1000, DefaultPacerSpin, DefaultPacerSpin},
		{"fixed", 1000, 50 * time.Microsecond, 50 * time.Microsecond},
		{"never spin", 1000, 0, 0},
		{"negative: never spin", 1000, -1, 0},
		{"capped at a quarter of the interval", 10000, DefaultPacerSpin, 25 * time.Microsecond},
		{"low rate keeps the margin", 1, DefaultPacerSpin, DefaultPacerSpin},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := newPrecisePacer(tc.rate, tc.spin).margin; got != tc.want {
				t.Errorf("margin = %s, want %s", got, tc.want)
			}
		})
	}
}

// Pace keeps ConstantPacer's schedule but does the waiting itself: it
// returns a zero wait, never before the tick is due.
func TestPrecisePacerPace(t *testing.T) {
	p := newPrecisePacer(100, 0) // interval 10 ms
	start := time.Now()
	for hits := uint64(0); hits < 5; hits++ {
		wait, stop := p.Pace(time.Since(start), hits)
		if stop || wait != 0 {
			t.Fatalf("Pace(hits=%d) = %s, %v; want 0, false", hits, wait, stop)
		}
		due := time.Duration(hits+1) * 10 * time.Millisecond
		if el := time.Since(start); el < due {
			t.Fatalf("tick %d released at %s, before it was due at %s", hits, el, due)
		}
	}
	// Behind schedule: released at once, as ConstantPacer does.
	if wait, stop := p.Pace(5*time.Second, 3); wait != 0 || stop {
		t.Errorf("behind schedule: Pace = %s, %v", wait, stop)
	}
}
