package workload

import (
	"runtime"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// DefaultPacerSpin is the pacer's default margin: how long before each tick
// it stops sleeping in the kernel and spins. On the machines this project
// runs on, the kernel wakes an idle sleeper 80–200 µs late. The margin is
// also capped at a quarter of the interval, so spinning never takes more
// than a quarter of a core.
const DefaultPacerSpin = 200 * time.Microsecond

// precisePacer is vegeta's ConstantPacer with an accurate clock.
//
// vegeta waits out the interval the pacer returns with time.Sleep, and the
// Go runtime rounds timer sleeps up to whole milliseconds when the process
// is idle (its netpoller waits in milliseconds): at 1000 req/s ticks then
// leave 0–1 ms late, in bursts, and that lateness lands in every latency
// measured from the intended send time. precisePacer instead waits inside
// Pace until each tick is due, sleeping in the kernel (nanosleep) until a
// margin before the due time and spinning (yielding) for the rest, and
// returns no wait. The schedule (tick n due at (n+1)·interval) and the stop
// conditions are ConstantPacer's own.
//
// (A margin that adapts to the kernel's measured lateness was tried and
// rejected: under CPU pressure the lateness grows, the spin grows with it
// and takes the core the workloads need.)
type precisePacer struct {
	vegeta.ConstantPacer
	margin time.Duration
}

var _ vegeta.Pacer = precisePacer{}

// newPrecisePacer returns a pacer of rate requests per second with the
// given spin margin (0 or negative: never spin), capped at a quarter of the
// interval.
func newPrecisePacer(rate int, spin time.Duration) precisePacer {
	cp := vegeta.ConstantPacer{Freq: rate, Per: time.Second}
	interval := time.Second / time.Duration(rate)
	return precisePacer{ConstantPacer: cp, margin: min(max(spin, 0), interval/4)}
}

// Pace waits until the next tick is due and returns a zero wait, or
// returns ConstantPacer's answer when the tick is already due or the attack
// must stop.
func (p precisePacer) Pace(elapsed time.Duration, hits uint64) (time.Duration, bool) {
	wait, stop := p.ConstantPacer.Pace(elapsed, hits)
	if stop || wait <= 0 {
		return wait, stop
	}
	sleepUntil(time.Now().Add(wait), p.margin)
	return 0, false
}

// sleepUntil returns at deadline or just after: it sleeps in the kernel
// until margin before deadline, then yields until deadline passes.
func sleepUntil(deadline time.Time, margin time.Duration) {
	if d := time.Until(deadline) - margin; d > 0 {
		sleepKernel(d)
	}
	for time.Now().Before(deadline) {
		runtime.Gosched()
	}
}
