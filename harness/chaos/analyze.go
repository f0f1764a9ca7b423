package chaos

import (
	"slices"

	"github.com/meshbench/meshbench/harness/results"
)

// Recovery thresholds: a window has recovered when its success ratio is at
// least RecoveredSuccess and its p99 at most RecoveredP99Factor times the
// median p99 of the windows before the fault.
const (
	RecoveredSuccess   = 0.99
	RecoveredP99Factor = 2.0
)

// Analyze fills each fault's Errors, DetectS and RecoverS from the step's
// time windows (in StartS order, of equal width) and returns the updated
// copies; it does not modify its arguments.
//
//   - DetectS is the start of the first window, among those that overlap or
//     follow the fault's start, with a failed request, in seconds after the
//     fault's StartS (0 when that window began before the fault); -1 when
//     none has one.
//   - RecoverS is the start of the first window that begins at or after the
//     fault's EndS with requests, success ratio >= 0.99 and p99 <= 2× the
//     baseline, in seconds after EndS; -1 when none does (or the fault never
//     ended). The baseline is the median p99 of the windows that end at or
//     before the fault's start and carried requests; with no such window
//     only the success ratio counts. The resolution is the window width.
//   - Errors counts the failed requests of the windows from the one that
//     holds StartS up to, not including, the recovered window (or to the
//     step's end).
func Analyze(windows []results.Window, faults []results.FaultRecord) []results.FaultRecord {
	out := slices.Clone(faults)
	width := 1.0
	if len(windows) > 1 && windows[1].StartS > windows[0].StartS {
		width = windows[1].StartS - windows[0].StartS
	}
	const eps = 1e-9
	for i := range out {
		f := &out[i]
		f.Errors, f.DetectS, f.RecoverS = 0, -1, -1
		if f.StartS < 0 {
			continue
		}
		var pre []float64
		for _, w := range windows {
			if w.StartS+width <= f.StartS+eps && w.Requests > 0 {
				pre = append(pre, w.P99US)
			}
		}
		baseline := median(pre)
		recoveredAt := -1.0
		if f.EndS >= 0 {
			for _, w := range windows {
				if w.StartS+eps < f.EndS || w.Requests == 0 {
					continue
				}
				if w.SuccessRatio >= RecoveredSuccess && (baseline <= 0 || w.P99US <= RecoveredP99Factor*baseline) {
					recoveredAt = w.StartS
					f.RecoverS = w.StartS - f.EndS
					break
				}
			}
		}
		for _, w := range windows {
			if w.StartS+width <= f.StartS+eps {
				continue // ended before the fault
			}
			if recoveredAt >= 0 && w.StartS >= recoveredAt-eps {
				break
			}
			errs := w.Requests - w.Successes
			if errs <= 0 {
				continue
			}
			f.Errors += errs
			if f.DetectS < 0 {
				f.DetectS = max(0, w.StartS-f.StartS)
			}
		}
	}
	return out
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
