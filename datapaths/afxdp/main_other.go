//go:build !linux

package afxdp

import (
	"context"
	"errors"
	"io"
)

// ForwarderMain is the `meshbench forwarder` subcommand; it needs Linux.
func ForwarderMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("forwarder: AF_XDP needs Linux")
}
