//go:build !linux

package harness

import "time"

// sleepKernel sleeps for d (the Go runtime's timer where there is no
// clock_nanosleep to call directly).
func sleepKernel(d time.Duration) bool {
	time.Sleep(d)
	return true
}
