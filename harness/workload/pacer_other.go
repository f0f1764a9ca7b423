//go:build !linux

package workload

import "time"

// sleepKernel sleeps for d (the runtime's timers; the spin makes up for
// their resolution).
func sleepKernel(d time.Duration) { time.Sleep(d) }
