//go:build !linux

package proxy

import (
	"errors"
	"net"
	"net/netip"
)

// OriginalDst returns the destination a connection had before it was
// redirected to the proxy; only Linux has SO_ORIGINAL_DST.
func OriginalDst(net.Conn) (netip.AddrPort, error) {
	return netip.AddrPort{}, errors.New("original destination: SO_ORIGINAL_DST needs Linux")
}
