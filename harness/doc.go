// Package harness runs a meshbench scenario end to end: it builds a testbed
// for each datapath, drives open-loop load through it, proves the datapath
// carried the traffic and records what it measured.
package harness
