package harness

import (
	"context"
	"math"
	"slices"
	"time"

	"github.com/meshbench/meshbench/harness/results"
)

// The timer wake-up probe sleeps many times for a fixed time and records
// how late each sleep woke up, as cyclictest does. On the VMs this project
// runs on, waking an idle vCPU costs tens to hundreds of microseconds and
// dominates open-loop latency at moderate rates, so the probe tells a
// noisy machine from a quiet one before any datapath is measured.
var timerProbes = []struct {
	sleep time.Duration
	n     int
}{
	{100 * time.Microsecond, 300},
	{time.Millisecond, 100},
}

// noiseProbeMax bounds the whole probe, however late the sleeps wake.
const noiseProbeMax = time.Second

// ProbeNoise runs the timer wake-up probe: 300 sleeps of 100 µs and 100 of
// 1 ms (about 0.15 s on an idle machine, never more than a second). It
// returns one TimerProbe per sleep length that got samples.
func ProbeNoise(ctx context.Context) []results.TimerProbe {
	deadline := time.Now().Add(noiseProbeMax)
	var out []results.TimerProbe
	for _, p := range timerProbes {
		if tp := probeTimer(ctx, p.sleep, p.n, deadline, sleepKernel); tp.Samples > 0 {
			out = append(out, tp)
		}
	}
	return out
}

// probeTimer sleeps n times for d with sleep and returns the percentiles
// of how much longer than d each sleep took. It stops early at deadline or
// when ctx ends.
func probeTimer(ctx context.Context, d time.Duration, n int, deadline time.Time, sleep func(time.Duration) bool) results.TimerProbe {
	over := make([]float64, 0, n)
	for range n {
		if ctx.Err() != nil || time.Now().After(deadline) {
			break
		}
		start := time.Now()
		if !sleep(d) {
			continue // interrupted: not a wake-up of the timer
		}
		over = append(over, float64(time.Since(start)-d)/float64(time.Microsecond))
	}
	tp := results.TimerProbe{SleepUS: float64(d) / float64(time.Microsecond), Samples: len(over)}
	if len(over) == 0 {
		return tp
	}
	slices.Sort(over)
	tp.OvershootP50US = round1(quantile(over, 0.50))
	tp.OvershootP99US = round1(quantile(over, 0.99))
	return tp
}

// quantile returns the q-quantile of sorted values (nearest rank).
func quantile(sorted []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }
