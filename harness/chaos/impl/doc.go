// Package impl names the implementations of chaos faults: the one list the
// doctor (which probes which ones a host can run) and package chaos (which
// runs them) agree on.
package impl
