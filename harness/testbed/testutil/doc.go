// Package testutil helps tests that build testbeds: privilege checks, run
// ids and leak checks of the objects a run leaves on the host.
package testutil
