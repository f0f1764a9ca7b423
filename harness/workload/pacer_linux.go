package workload

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"
)

// sleepKernel sleeps for d with nanosleep(2), which wakes with the kernel's
// high-resolution timers rather than the Go runtime's millisecond ones.
func sleepKernel(d time.Duration) {
	ts := unix.NsecToTimespec(d.Nanoseconds())
	for {
		var rem unix.Timespec
		err := unix.Nanosleep(&ts, &rem)
		if !errors.Is(err, unix.EINTR) {
			return
		}
		ts = rem
	}
}
