//go:build !linux

package cgroupfs

import (
	"errors"
	"io"
)

var errNotLinux = errors.New("cgroups: not on Linux")

// Find reports that there are no cgroups outside Linux.
func Find() (Roots, error) { return Roots{}, errNotLinux }

// FindUnder returns an error: cgroups are Linux only.
func FindUnder(string) (Roots, error) { return Roots{}, errNotLinux }

// Parse reports that there are no cgroups outside Linux.
func Parse(io.Reader) (Roots, error) { return Roots{}, errNotLinux }
