// Package fake is a datapaths.Datapath that sets nothing up and counts the
// calls made to it, so that the harness can be tested without root.
package fake
