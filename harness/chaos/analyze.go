package chaos

import (
	"math"
	"slices"
	"time"

	"github.com/meshbench/meshbench/harness/results"
)

// Recovery thresholds. A window is slow when its typical latency (p90)
// is above RecoveredP99Factor times the median p90 of the windows before
// the first fault, or its tail (p99) above RecoveredP99Factor times the
// worst p99 of those windows: short windows hold few requests, and one
// stray slow request must not count as the fault, nor keep the traffic
// from having recovered. A window is healthy when its success ratio is
// at least RecoveredSuccess and it is not slow; the traffic has recovered
// once the windows stay healthy for RecoveredHold.
const (
	RecoveredSuccess   = 0.99
	RecoveredP99Factor = 2.0
	RecoveredHold      = 500 * time.Millisecond
)

// Analyze fills each fault's Errors, SharedErrors, DetectS, RecoverS and
// ResolutionS from the step's time windows (in StartS order, of equal
// width) and returns the updated copies; it does not modify its arguments.
//
//   - The baseline is the windows that end before the first fault's start
//     (but for the last of them, whose requests may have been in flight
//     when it began) and carried requests: windows no fault touched. With no such
//     window only the success ratio counts. (Windows written without a
//     p90 are held to their p99 alone.)
//   - A window is degraded when it has a failed request or is slow (see
//     the thresholds), healthy when its success ratio is at least
//     RecoveredSuccess and it is not slow.
//   - DetectS is the start of the first degraded window among those that
//     overlap or follow the fault's start (up to its recovery), in seconds
//     after the fault's StartS (0 when that window began before the
//     fault); -1 when none is degraded.
//   - RecoverS is the start of the first window at or after the fault's
//     EndS that begins RecoveredHold of healthy windows (fewer when the
//     step ends, or another fault starts, first: the hold ends before the
//     window whose requests were in flight at that fault's start), in
//     seconds after EndS;
//     -1 when none does (or the fault never ended).
//   - A fault claims the windows from the one that holds its StartS up
//     to, not including, its recovered window (or to the step's end), and
//     the window before when requests of it failed and failures go on in
//     the fault's first window: they were in flight when it began. The
//     failed requests of a window only one fault claims count in its
//     Errors; those of a window several claim count in the SharedErrors of
//     each, with the others named in SharedWith.
//
// Times are exact to the window width, which ResolutionS records.
func Analyze(windows []results.Window, faults []results.FaultRecord) []results.FaultRecord {
	out := slices.Clone(faults)
	width := 1.0
	if len(windows) > 1 && windows[1].StartS > windows[0].StartS {
		width = windows[1].StartS - windows[0].StartS
	}
	const eps = 1e-9
	first := math.Inf(1)
	for _, f := range out {
		if f.StartS >= 0 {
			first = min(first, f.StartS)
		}
	}
	var p90s, p99s []float64
	for _, w := range windows {
		// Not the window just before the first fault: its requests were
		// in flight when it began.
		if w.StartS+2*width <= first+eps && w.Requests > 0 {
			p90s = append(p90s, w.P90US)
			p99s = append(p99s, w.P99US)
		}
	}
	typical, worst := median(p90s), slices.Max(append([]float64{0}, p99s...))
	slow := func(w results.Window) bool {
		return (typical > 0 && w.P90US > RecoveredP99Factor*typical) || (worst > 0 && w.P99US > RecoveredP99Factor*worst)
	}
	healthy := func(w results.Window) bool { return w.SuccessRatio >= RecoveredSuccess && !slow(w) }
	failed := func(w results.Window) bool { return w.Requests > w.Successes }
	degraded := func(w results.Window) bool { return failed(w) || slow(w) }
	hold := max(1, int(math.Ceil(RecoveredHold.Seconds()/width-eps)))

	// claims[j] lists the faults that claim window j.
	claims := make([][]int, len(windows))
	for i := range out {
		f := &out[i]
		f.Errors, f.SharedErrors, f.SharedWith, f.DetectS, f.RecoverS = 0, 0, nil, -1, -1
		f.ResolutionS = width
		if f.StartS < 0 {
			continue
		}
		// The next fault to start after this one ended bounds the hold.
		next := math.Inf(1)
		for _, g := range out {
			if g.StartS >= 0 && f.EndS >= 0 && g.StartS > f.EndS+eps {
				next = min(next, g.StartS)
			}
		}
		recovered := len(windows)
		if f.EndS >= 0 {
			for j, w := range windows {
				if w.StartS+eps < f.EndS || w.Requests == 0 || !healthy(w) {
					continue
				}
				if holds(windows[j:], hold, width, next, healthy) {
					recovered = j
					f.RecoverS = w.StartS - f.EndS
					break
				}
			}
		}
		for j := range recovered {
			w := windows[j]
			if w.StartS+2*width <= f.StartS+eps {
				// Ended before the fault, and before the window whose
				// requests were in flight when it began.
				continue
			}
			if w.StartS+width <= f.StartS+eps && !(failed(w) && j+1 < len(windows) && failed(windows[j+1])) {
				// That window counts only when requests failed in it and
				// go on failing in the fault's first window.
				continue
			}
			claims[j] = append(claims[j], i)
			if f.DetectS < 0 && w.Requests > 0 && degraded(w) {
				f.DetectS = max(0, w.StartS-f.StartS)
			}
		}
	}
	for j, cl := range claims {
		errs := windows[j].Requests - windows[j].Successes
		if errs <= 0 || len(cl) == 0 {
			continue
		}
		if len(cl) == 1 {
			out[cl[0]].Errors += errs
			continue
		}
		for _, i := range cl {
			out[i].SharedErrors += errs
			for _, k := range cl {
				if k != i && !slices.Contains(out[i].SharedWith, out[k].Name) {
					out[i].SharedWith = append(out[i].SharedWith, out[k].Name)
				}
			}
		}
	}
	return out
}

// holds reports whether the first n windows of ws that carried requests
// are healthy, stopping early (and holding) at the step's end or, when
// ws begins before it, at the first window whose requests may still have
// been in flight when another fault started at next (the window that ends
// at or after next).
func holds(ws []results.Window, n int, width, next float64, healthy func(results.Window) bool) bool {
	const eps = 1e-9
	inFlightAt := func(w results.Window) bool { return w.StartS+width >= next-eps }
	if len(ws) > 0 && inFlightAt(ws[0]) {
		next = math.Inf(1)
	}
	for _, w := range ws {
		if n == 0 || inFlightAt(w) {
			return true
		}
		if w.Requests == 0 {
			continue
		}
		if !healthy(w) {
			return false
		}
		n--
	}
	return true
}

// median returns the median of v, 0 when v is empty.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Active returns the names of the faults active during the window that
// starts at startS and lasts width seconds (a fault that never ended is
// active to the end of the step), for marking fault windows in reports.
func Active(startS, width float64, faults []results.FaultRecord) []string {
	var out []string
	for _, f := range faults {
		if f.StartS < 0 {
			continue
		}
		end := f.EndS
		if end < 0 {
			end = startS + width + 1 // still active
		}
		if f.StartS < startS+width && end > startS {
			out = append(out, f.Name)
		}
	}
	return out
}
