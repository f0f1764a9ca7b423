//go:build !linux

package nsutil

import (
	"context"
	"errors"
	"net"
)

// ErrNotSupported is returned on systems without network namespaces.
var ErrNotSupported = errors.New("network namespaces need Linux")

// Do is not supported outside Linux.
func Do(path string, fn func() error) error { return ErrNotSupported }

// Dialer is not supported outside Linux: its function always fails.
func Dialer(path string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(context.Context, string, string) (net.Conn, error) { return nil, ErrNotSupported }
}

// Dial is not supported outside Linux.
func Dial(ctx context.Context, path, network, addr string) (net.Conn, error) {
	return nil, ErrNotSupported
}

// Listen is not supported outside Linux.
func Listen(path, network, addr string) (net.Listener, error) { return nil, ErrNotSupported }

// RefuseRoot is not supported outside Linux.
func RefuseRoot(path string) error { return ErrNotSupported }
