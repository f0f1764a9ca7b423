// Package controlplane is the harness's xDS server: it derives listeners,
// routes, clusters and endpoints from the scenario's services and pushes them
// to every proxy over ADS on a unix socket.
package controlplane
