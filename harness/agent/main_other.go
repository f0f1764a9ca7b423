//go:build !linux

package agent

import (
	"context"
	"errors"
	"io"
)

// Main returns an error: the agent runs on Linux nodes only.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("agent: Linux only")
}
