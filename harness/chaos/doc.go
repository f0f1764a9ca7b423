// Package chaos injects faults (pod-kill, proxy-kill, delay, loss, partition,
// bandwidth) into testbed pods on a timeline and measures recovery from the
// load's time windows.
package chaos
