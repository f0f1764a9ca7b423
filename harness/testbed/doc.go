// Package testbed provisions clusters of nodes and pods and hands out the pod
// and node handles that datapaths, chaos and metrics act on.
package testbed
