// Package sidecar is the iptables sidecar datapath (Istio sidecar mode): every
// pod gets a proxy, and nat rules in the pod's namespace redirect its
// outbound and inbound TCP traffic through it.
package sidecar
