//go:build !linux

package kubeenv

import (
	"context"
	"net"
	"net/netip"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// ControlPlane is a running Kubernetes control plane (Linux only).
type ControlPlane struct{}

// StartControlPlane returns ErrNotSupported off Linux.
func StartControlPlane(ctx context.Context, opts Options) (*ControlPlane, error) {
	return nil, ErrNotSupported
}

// RunID returns "".
func (cp *ControlPlane) RunID() string { return "" }

// Dir returns "".
func (cp *ControlPlane) Dir() string { return "" }

// Config returns nil.
func (cp *ControlPlane) Config() *rest.Config { return nil }

// Client returns nil.
func (cp *ControlPlane) Client() kubernetes.Interface { return nil }

// KubeconfigPath returns "".
func (cp *ControlPlane) KubeconfigPath() string { return "" }

// Nodes returns nil.
func (cp *ControlPlane) Nodes() []*Node { return nil }

// AddNode returns ErrNotSupported.
func (cp *ControlPlane) AddNode(ctx context.Context) (*Node, error) { return nil, ErrNotSupported }

// DialContext returns ErrNotSupported.
func (cp *ControlPlane) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return nil, ErrNotSupported
}

// Stop returns nil.
func (cp *ControlPlane) Stop(ctx context.Context) error { return nil }

// Node is a real Kubernetes node (Linux only).
type Node struct {
	Index   int
	Name    string
	IP      netip.Addr
	PodCIDR netip.Prefix
}

// NetnsPath returns "".
func (n *Node) NetnsPath() string { return "" }

// ContainerdSocket returns "".
func (n *Node) ContainerdSocket() string { return "" }

// CgroupParent returns "".
func (n *Node) CgroupParent() string { return "" }

// MountNamespacePath returns "".
func (n *Node) MountNamespacePath() string { return "" }

// ImportImage returns ErrNotSupported.
func (n *Node) ImportImage(ctx context.Context, tarPath string) error { return ErrNotSupported }

// Down returns ErrNotSupported.
func Down(ctx context.Context, runID string) ([]string, error) { return nil, ErrNotSupported }

// SnapshotHost returns ErrNotSupported.
func SnapshotHost(ctx context.Context, runID string) (HostState, error) {
	return HostState{}, ErrNotSupported
}
