// Package ports names the ports meshbench's proxies and workloads listen
// on inside a pod or node: the one place those numbers are written.
package ports
