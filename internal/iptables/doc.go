// Package iptables runs iptables inside the testbed's network namespaces,
// never in the host's own, one command at a time.
//
// It is Linux-only in practice (nsenter, iptables); elsewhere every call
// fails.
package iptables
