// Package workload implements the echo server and the open-loop load client
// that the harness runs as processes inside pods.
package workload
