package none

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/meshbench/meshbench/datapaths/catalog"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed"
)

// Name is the datapath's name in scenarios and results.
const Name = catalog.None

// Datapath is the no-mesh baseline. The load client addresses the
// service's backend pods directly, round robin.
type Datapath struct {
	env *datapaths.Env
}

var _ datapaths.Datapath = (*Datapath)(nil)

// New returns the baseline datapath.
func New() *Datapath { return &Datapath{} }

// Name implements datapaths.Datapath.
func (d *Datapath) Name() string { return Name }

// Install implements datapaths.Datapath. There is nothing to set up: it only
// checks that every service has backends (the runner has already waited
// for every echo server to answer).
func (d *Datapath) Install(ctx context.Context, env *datapaths.Env) error {
	d.env = env
	for _, svc := range env.Services {
		if len(svc.Backends) == 0 {
			return fmt.Errorf("service %s has no backends", svc.Name)
		}
	}
	return nil
}

// Target implements datapaths.Datapath: the cluster's own address for the
// service when it has one (a Kubernetes ClusterIP: the cluster's Service
// path, kube-proxy or its CNI, is the real no-mesh baseline there), else
// the backends' own addresses, which the client balances over.
func (d *Datapath) Target(svc *datapaths.Service) []netip.AddrPort {
	if svc.ClusterAddr.IsValid() {
		return []netip.AddrPort{netip.AddrPortFrom(svc.ClusterAddr, uint16(svc.Port))}
	}
	out := make([]netip.AddrPort, 0, len(svc.Backends))
	for _, p := range svc.Backends {
		out = append(out, netip.AddrPortFrom(p.IP, uint16(svc.Port)))
	}
	return out
}

// ProofSource implements datapaths.Datapath. It says which baseline ran:
// the client balancing over pod addresses, or the cluster's Service path.
func (d *Datapath) ProofSource() string {
	if d.env != nil && d.env.Load != nil && d.env.Load.ClusterAddr.IsValid() {
		return fmt.Sprintf("echo servers' request counters (/stats); the client sent to the Service's cluster address %s, balanced by the cluster (kube-proxy or its CNI)", d.env.Load.ClusterAddr)
	}
	return "echo servers' request counters (/stats); the client balanced over the pods' addresses"
}

// Counters implements datapaths.Datapath: the request count of every
// backend's echo server, keyed "echo_requests/<pod>", and their sum
// "echo_requests"; and the requests each received straight from the client
// pod's address, "echo_from_client/<pod>" and their sum
// "echo_from_client".
func (d *Datapath) Counters(ctx context.Context) (map[string]int64, error) {
	if d.env == nil {
		return nil, fmt.Errorf("datapath %s: not installed", Name)
	}
	client := ""
	if d.env.Client != nil {
		client = d.env.Client.IP.String()
	}
	out := map[string]int64{}
	seen := map[string]bool{}
	var backends []*testbed.Pod
	for _, svc := range d.env.Services {
		for _, p := range svc.Backends {
			if !seen[p.Name] {
				seen[p.Name] = true
				backends = append(backends, p)
			}
		}
	}
	stats, err := datapaths.ReadAll(ctx, backends, datapaths.ReadEchoStats)
	if err != nil {
		return nil, err
	}
	for i, p := range backends {
		st := stats[i]
		out["echo_requests/"+p.Name] = st.Requests
		out["echo_requests"] += st.Requests
		out["echo_from_client/"+p.Name] = st.ByPeer[client]
		out["echo_from_client"] += st.ByPeer[client]
	}
	return out, nil
}

// Verify implements datapaths.Datapath: the backends' echo servers must have
// served the client's successful requests, every one of them straight from
// the client pod's address (no proxy or NAT in between).
func (d *Datapath) Verify(delta map[string]int64, w datapaths.Work) []results.ProofCheck {
	return datapaths.EchoChecks("backends' echo servers", delta["echo_requests"], delta["echo_from_client"], "the client pod", w)
}

// Uninstall implements datapaths.Datapath; there is nothing to remove.
func (d *Datapath) Uninstall(ctx context.Context) error { return nil }
