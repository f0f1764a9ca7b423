package harness

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// sleepKernel sleeps for d in clock_nanosleep on a locked OS thread, so
// that what is measured is the kernel's wake-up of a sleeping thread, not
// the Go runtime's timers. It reports false when a signal cut the sleep
// short.
func sleepKernel(d time.Duration) bool {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ts := unix.NsecToTimespec(d.Nanoseconds())
	return unix.ClockNanosleep(unix.CLOCK_MONOTONIC, 0, &ts, nil) == nil
}
