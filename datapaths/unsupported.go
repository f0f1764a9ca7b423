package datapaths

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/meshbench/meshbench/harness/results"
)

// Unsupported returns a datapath that cannot be installed on this system:
// Install fails with ErrNotSupported and the reason. It lets registries list
// every datapath on systems that build without the kernel-specific code.
func Unsupported(name, reason string) Datapath { return unsupported{name, reason} }

type unsupported struct{ name, reason string }

func (u unsupported) Name() string { return u.name }
func (u unsupported) Install(context.Context, *Env) error {
	return fmt.Errorf("datapath %s: %s: %w", u.name, u.reason, ErrNotSupported)
}
func (u unsupported) Target(*Service) []netip.AddrPort { return nil }
func (u unsupported) Counters(context.Context) (map[string]int64, error) {
	return nil, ErrNotSupported
}
func (u unsupported) Verify(map[string]int64, Work) []results.ProofCheck {
	return []results.ProofCheck{Fail("datapath installed", u.reason)}
}
func (u unsupported) ProofSource() string             { return "" }
func (u unsupported) Uninstall(context.Context) error { return nil }
