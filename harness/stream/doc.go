// Package stream defines the load client's JSON-lines stream, reads it on the
// harness side, and works with the sparse latency histograms it carries.
package stream
