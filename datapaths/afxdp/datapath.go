package afxdp

import (
	"context"
	"fmt"
	"net/netip"
	"sync"

	"github.com/meshbench/meshbench/datapaths/catalog"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed"
)

// Name is the datapath's name in scenarios and results.
const Name = catalog.AFXDP

// Datapath is the AF_XDP user-space fast path: one forwarder process per
// node (started as `<Exec> forwarder --config ...`). The load client
// addresses each service's VIP. It is L4 only: no retries, no L7 routing.
type Datapath struct {
	env   *datapaths.Env
	procs []*testbed.Process // by node; replaced when RestartProcess restarts one
	nodes []*testbed.Node
	cfgs  []*Config
	logs  []*tailBuffer

	mu   sync.Mutex
	last map[string]Stats // each node's forwarder's last /stats, by node
}

var (
	_ datapaths.Datapath          = (*Datapath)(nil)
	_ datapaths.ProcessRestarter  = (*Datapath)(nil)
	_ datapaths.FootprintReporter = (*Datapath)(nil)
)

// New returns the AF_XDP datapath.
func New() *Datapath { return &Datapath{} }

// Name implements datapaths.Datapath.
func (d *Datapath) Name() string { return Name }

// Target implements datapaths.Datapath: the service's VIP and port.
func (d *Datapath) Target(svc *datapaths.Service) []netip.AddrPort {
	return []netip.AddrPort{netip.AddrPortFrom(svc.VIP, uint16(svc.Port))}
}

// ProofSource implements datapaths.Datapath.
func (d *Datapath) ProofSource() string {
	return "per-node AF_XDP forwarders' /stats (frames per socket, NAT hits) and their XDP programs' counters"
}

// Counters implements datapaths.Datapath: the forwarders' counters summed
// over nodes (rx_frames, tx_frames, dropped, fill_ring_empty, nat_hits,
// reverse_nat_hits, xdp_redirected, ...), and per socket as
// "<counter>/<node>/<interface>".
func (d *Datapath) Counters(ctx context.Context) (map[string]int64, error) {
	if d.env == nil {
		return nil, fmt.Errorf("datapath %s: not installed", Name)
	}
	out := map[string]int64{}
	for _, n := range d.nodes {
		var st Stats
		if err := datapaths.GetJSON(ctx, n.Netns(), AdminAddr, "/stats", &st); err != nil {
			return nil, fmt.Errorf("read forwarder stats of node %s: %w", n.Name, err)
		}
		addStats(out, n.Name, &st)
		d.mu.Lock()
		if d.last == nil {
			d.last = map[string]Stats{}
		}
		d.last[n.Name] = st
		d.mu.Unlock()
	}
	return out, nil
}

// Footprint implements datapaths.FootprintReporter from the forwarders'
// last /stats (read by Counters): each node's XDP program and maps, one
// copy per node, which the forwarder's RSS does not show; and the AF_XDP
// socket each pod's veth adds to its node's forwarder (UMEM and rings, in
// the forwarder's PSS already). A node's uplink socket is one per node, so
// it stays in the forwarder's own share.
func (d *Datapath) Footprint() results.Footprint {
	d.mu.Lock()
	defer d.mu.Unlock()
	fp := results.Footprint{
		BPFCopies: len(d.nodes),
		Basis:     "per node: the forwarder with its uplink's AF_XDP socket, and its XDP program and maps (kernel); per pod: the AF_XDP socket on the pod's veth (UMEM and rings, mapped at open)",
	}
	for _, n := range d.nodes {
		st, ok := d.last[n.Name]
		if !ok {
			fp.Basis += fmt.Sprintf("; node %s's forwarder stats were never read, its figures are missing", n.Name)
			continue
		}
		fp.BPFBytes += st.BPFBytes
		for _, s := range st.Sockets {
			if s.Interface == n.Uplink {
				continue
			}
			fp.PodUnits++
			fp.PodBytes = max(fp.PodBytes, s.MappedBytes)
		}
	}
	return fp
}

// addStats adds st's counters into out.
func addStats(out map[string]int64, node string, st *Stats) {
	for k, v := range map[string]int64{
		"rx_frames": st.RxFrames, "tx_frames": st.TxFrames, "dropped": st.Dropped,
		"fill_ring_empty": st.FillRingEmpty, "rx_ring_full": st.RxRingFull, "nat_hits": st.NATHits, "reverse_nat_hits": st.ReverseNATHits,
		"drop_no_route": st.DropNoRoute, "drop_malformed": st.DropMalformed, "drop_ttl": st.DropTTL,
	} {
		out[k] += v
	}
	for k, v := range st.XDP {
		out[k] += v
	}
	for _, s := range st.Sockets {
		p := "/" + node + "/" + s.Interface
		out["rx_frames"+p] = s.RxFrames
		out["tx_frames"+p] = s.TxFrames
		out["dropped"+p] = s.Dropped
		out["fill_ring_empty"+p] = s.FillRingEmpty
	}
}

// Verify implements datapaths.Datapath. The client pod has one interface,
// whose host side carries the XDP program: every TCP segment the client pod
// sent must have reached the forwarder's socket on that veth and been
// rewritten from the VIP to a backend, and every segment it received must
// have been rewritten back from the backend to the VIP by the forwarder of
// the backend's node (replies from another node reach the client's node
// on its uplink, which has no XDP program, and the kernel delivers them).
// Segments are compared with the client pod's own TCP counters
// (/proc/net/snmp in its namespace).
func (d *Datapath) Verify(delta map[string]int64, w datapaths.Work) []results.ProofCheck {
	sock := ""
	if c := d.env.Client; c != nil {
		sock = "/" + c.Node + "/" + c.HostVeth
	}
	out, in := w.ClientOutSegs, w.ClientInSegs
	why := "± the window-edge slack in segments (" + w.SlackWhy + "), and delayed ACKs on the edges"
	segs := func(what string, n, of int64) string { return fmt.Sprintf("%s %d/%d client segs", what, n, of) }
	rx := delta["rx_frames"+sock]
	return []results.ProofCheck{
		datapaths.Near("the forwarder received every segment the client pod sent", rx, out, w.SlackSegs(out), segs("XDP→forwarder", rx, out), why),
		datapaths.Near("every client segment was NATed from the VIP to a backend", delta["nat_hits"], out, w.SlackSegs(out), segs("NAT", delta["nat_hits"], out), why),
		datapaths.Near("every reply segment was NATed back to the VIP", delta["reverse_nat_hits"], in, w.SlackSegs(in), segs("reverse NAT", delta["reverse_nat_hits"], in), why),
	}
}

// tailBuffer keeps the last bytes a process wrote, for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > 4096 {
		b.buf = b.buf[len(b.buf)-4096:]
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

func netipAddrPort(p *testbed.Pod, port int) netip.AddrPort {
	return netip.AddrPortFrom(p.IP, uint16(port))
}
