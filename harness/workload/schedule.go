package workload

import (
	"time"
)

// schedule is the timetable of vegeta's ConstantPacer, from which each
// request's intended send time is known.
//
// vegeta (lib/attack.go, lib/pacer.go, v12.13.0) releases tick number
// hits (0-based) when ConstantPacer.Pace(elapsed, hits) stops asking it to
// sleep, at (hits+1)·interval after the attack began, with interval =
// 1s/Rate in integer nanoseconds; when it falls behind it releases ticks
// at once, but each tick keeps its due time. A worker that receives a tick
// takes the next Result.Seq under a lock, so Result.Seq n is the n-th tick
// and its intended send time is began + (n+1)·interval. (Two workers can
// swap adjacent sequence numbers; the error is one interval on each of
// the two requests.)
type schedule struct {
	began    time.Time     // time.Now() just before Attack: at most a few µs before vegeta's own start
	interval time.Duration // the pacer's interval
	warmup   time.Duration // intended times up to began+warmup are warm-up
	duration time.Duration // the measured window after the warm-up
	window   time.Duration // the width of one window
}

// newSchedule returns the schedule of an attack at rate requests per
// second that began at began.
func newSchedule(began time.Time, rate int, warmup, duration, window time.Duration) schedule {
	return schedule{
		began:    began,
		interval: time.Duration(int64(time.Second) / int64(rate)),
		warmup:   warmup,
		duration: duration,
		window:   window,
	}
}

// intended returns the time the pacer meant to send request seq.
func (s schedule) intended(seq uint64) time.Time {
	return s.began.Add(time.Duration(seq+1) * s.interval)
}

// offset returns the intended send time of request seq relative to the
// start of the measured window (began + warmup). A request belongs to the
// measured window when 0 < offset ≤ duration.
func (s schedule) offset(seq uint64) time.Duration {
	return time.Duration(seq+1)*s.interval - s.warmup
}

// measured reports whether request seq belongs to the measured window.
func (s schedule) measured(seq uint64) bool {
	off := s.offset(seq)
	return off > 0 && off <= s.duration
}

// latency returns the time from request seq's intended send time to end,
// the time its response completed; never negative.
func (s schedule) latency(seq uint64, end time.Time) time.Duration {
	return max(0, end.Sub(s.intended(seq)))
}

// windows returns the number of windows across the measured window.
func (s schedule) windows() int {
	return int((s.duration + s.window - 1) / s.window)
}

// windowOf returns the index of the window of a measured request: window
// i holds the offsets in (i·window, (i+1)·window].
func (s schedule) windowOf(seq uint64) int {
	return int((s.offset(seq) - 1) / s.window)
}

// expected returns how many requests the pacer sends in window i when it
// keeps up: the ticks k·interval in (warmup + i·window, warmup +
// min((i+1)·window, duration)].
func (s schedule) expected(i int) int64 {
	lo := s.warmup + time.Duration(i)*s.window
	hi := s.warmup + min(time.Duration(i+1)*s.window, s.duration)
	if hi <= lo {
		return 0
	}
	return int64(hi/s.interval) - int64(lo/s.interval)
}
