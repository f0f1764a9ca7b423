// Package xdp holds the XDP program that redirects meshed pods' IPv4 TCP and
// UDP packets from their host-side veths into AF_XDP sockets.
package xdp
