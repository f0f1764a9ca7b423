package harness

import (
	"context"
	"testing"
	"time"
)

func TestProbeTimer(t *testing.T) {
	// A fake sleep that oversleeps by 10 µs per call, 1..n, and is
	// interrupted every fifth call.
	calls := 0
	sleep := func(d time.Duration) bool {
		calls++
		if calls%5 == 0 {
			return false
		}
		time.Sleep(d + time.Duration(calls)*10*time.Microsecond)
		return true
	}
	tp := probeTimer(context.Background(), 50*time.Microsecond, 20, time.Now().Add(time.Minute), sleep)
	if tp.SleepUS != 50 || tp.Samples != 16 {
		t.Fatalf("probe %+v, want 16 samples of 50 µs sleeps (4 interrupted)", tp)
	}
	// Real sleeps oversleep at least what the fake adds: the median of
	// 10..190 µs without the multiples of 50.
	if tp.OvershootP50US < 80 || tp.OvershootP99US < tp.OvershootP50US || tp.OvershootP99US < 190 {
		t.Errorf("overshoot p50 %v p99 %v µs", tp.OvershootP50US, tp.OvershootP99US)
	}

	// The deadline stops it, and a cancelled context too.
	if tp := probeTimer(context.Background(), time.Millisecond, 1000, time.Now().Add(20*time.Millisecond), sleepKernel); tp.Samples == 0 || tp.Samples > 25 {
		t.Errorf("%d samples within a 20 ms deadline", tp.Samples)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if tp := probeTimer(ctx, time.Millisecond, 10, time.Now().Add(time.Minute), sleepKernel); tp.Samples != 0 || tp.OvershootP50US != 0 {
		t.Errorf("cancelled probe %+v", tp)
	}
}

func TestProbeNoise(t *testing.T) {
	start := time.Now()
	got := ProbeNoise(context.Background())
	if el := time.Since(start); el > noiseProbeMax+100*time.Millisecond {
		t.Errorf("probe took %s, more than its %s budget", el, noiseProbeMax)
	}
	if len(got) == 0 {
		t.Fatal("no probe results")
	}
	for _, tp := range got {
		if tp.Samples == 0 || tp.OvershootP50US < 0 || tp.OvershootP99US < tp.OvershootP50US {
			t.Errorf("probe %+v", tp)
		}
	}
	t.Logf("timer probe: %+v (%s)", got, time.Since(start).Round(time.Millisecond))
}
