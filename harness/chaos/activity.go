package chaos

import (
	"fmt"

	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed"
)

// dropActivity is the activity of a fault that drops or holds packets,
// from one counter: active when it counted any.
func dropActivity(counter string, n int64, what string) results.FaultActivity {
	a := results.FaultActivity{Active: n > 0, Counters: map[string]int64{counter: n}}
	if n > 0 {
		a.Detail = fmt.Sprintf("%s matched %d packets", what, n)
	} else {
		a.Detail = what + " matched no packet: the traffic the fault selects never passed them"
	}
	return a
}

// killActivity is the activity of a kill fault: active when it killed
// processes and they stayed down until the fault was recovered.
func killActivity(killed []*testbed.Process, replaced []*testbed.Process, what string) results.FaultActivity {
	a := results.FaultActivity{Counters: map[string]int64{"killed": int64(len(killed))}}
	down := true
	for _, p := range killed {
		a.KilledPIDs = append(a.KilledPIDs, p.PID)
		if !p.Exited() {
			down = false
		}
	}
	if len(replaced) > 0 {
		down = false
	}
	a.StayedDown = &down
	a.Active = len(killed) > 0 && down
	switch {
	case len(killed) == 0:
		a.Detail = "killed no " + what
	case !down && len(replaced) > 0:
		a.Detail = fmt.Sprintf("killed %d %s, but %s (pid %d) replaced them before the fault ended", len(killed), what, replaced[0].Name, replaced[0].PID)
	case !down:
		a.Detail = fmt.Sprintf("killed %d %s, but some still ran when the fault ended", len(killed), what)
	default:
		a.Detail = fmt.Sprintf("killed %d %s (pids %v); they stayed down until the fault ended", len(killed), what, a.KilledPIDs)
	}
	return a
}
