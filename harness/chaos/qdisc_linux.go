package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/meshbench/meshbench/harness/chaos/impl"

	"github.com/vishvananda/netlink"

	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/internal/nsutil"
	"github.com/meshbench/meshbench/scenarios"
)

// qdiscRef is one root qdisc a fault installed.
type qdiscRef struct {
	netns, link string
}

// rootQdiscs installs root qdiscs on pod interfaces and removes exactly
// those it installed, which returns the interface to its default qdisc.
type rootQdiscs struct {
	mu        sync.Mutex
	installed []qdiscRef
}

// add installs the qdisc build returns as the root qdisc of link in netns.
// It refuses an interface whose root qdisc was configured by someone else
// (a non-zero handle), which it would otherwise replace.
func (q *rootQdiscs) add(netnsPath, link string, build func(attrs netlink.QdiscAttrs) netlink.Qdisc) error {
	if err := nsutil.RefuseRoot(netnsPath); err != nil {
		return err
	}
	err := nsutil.Do(netnsPath, func() error {
		l, err := netlink.LinkByName(link)
		if err != nil {
			return fmt.Errorf("link %s: %w", link, err)
		}
		list, err := netlink.QdiscList(l)
		if err != nil {
			return fmt.Errorf("list qdiscs of %s: %w", link, err)
		}
		for _, old := range list {
			if old.Attrs().Parent == netlink.HANDLE_ROOT && old.Attrs().Handle != 0 {
				return fmt.Errorf("%s already has root qdisc %s %x: refusing to replace it", link, old.Type(), old.Attrs().Handle)
			}
		}
		qd := build(netlink.QdiscAttrs{LinkIndex: l.Attrs().Index, Handle: netlink.MakeHandle(0x4d42, 0), Parent: netlink.HANDLE_ROOT})
		if err := netlink.QdiscAdd(qd); err != nil {
			return fmt.Errorf("add %s qdisc on %s: %w", qd.Type(), link, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	q.mu.Lock()
	q.installed = append(q.installed, qdiscRef{netnsPath, link})
	q.mu.Unlock()
	return nil
}

// removeAll deletes the installed qdiscs; interfaces or namespaces that
// are gone count as cleaned.
func (q *rootQdiscs) removeAll() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	var errs []error
	var kept []qdiscRef
	for _, r := range q.installed {
		if _, err := os.Stat(r.netns); errors.Is(err, os.ErrNotExist) {
			continue
		}
		err := nsutil.Do(r.netns, func() error {
			l, err := netlink.LinkByName(r.link)
			if err != nil {
				var nf netlink.LinkNotFoundError
				if errors.As(err, &nf) {
					return nil
				}
				return fmt.Errorf("link %s: %w", r.link, err)
			}
			list, err := netlink.QdiscList(l)
			if err != nil {
				return fmt.Errorf("list qdiscs of %s: %w", r.link, err)
			}
			for _, qd := range list {
				if qd.Attrs().Parent == netlink.HANDLE_ROOT && qd.Attrs().Handle == netlink.MakeHandle(0x4d42, 0) {
					if err := netlink.QdiscDel(qd); err != nil {
						return fmt.Errorf("delete %s qdisc on %s: %w", qd.Type(), r.link, err)
					}
				}
			}
			return nil
		})
		if err != nil {
			errs = append(errs, err)
			kept = append(kept, r)
		}
	}
	q.installed = kept
	return errors.Join(errs...)
}

// stats sums the statistics of the installed qdiscs.
func (q *rootQdiscs) stats() (packets, drops, overlimits int64, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, r := range q.installed {
		err := nsutil.Do(r.netns, func() error {
			l, err := netlink.LinkByName(r.link)
			if err != nil {
				return fmt.Errorf("link %s: %w", r.link, err)
			}
			list, err := netlink.QdiscList(l)
			if err != nil {
				return fmt.Errorf("list qdiscs of %s: %w", r.link, err)
			}
			for _, qd := range list {
				a := qd.Attrs()
				if a.Parent != netlink.HANDLE_ROOT || a.Handle != netlink.MakeHandle(0x4d42, 0) || a.Statistics == nil {
					continue
				}
				st := a.Statistics
				if st.Basic != nil {
					packets += int64(st.Basic.Packets)
				}
				if st.Queue != nil {
					drops += int64(st.Queue.Drops)
					overlimits += int64(st.Queue.Overlimits)
				}
			}
			return nil
		})
		if err != nil {
			return 0, 0, 0, fmt.Errorf("qdisc statistics: %w", err)
		}
	}
	return packets, drops, overlimits, nil
}

// egressLinks returns, for each selected pod, the interfaces whose egress
// carries the traffic of direction: the pod's eth0 for "to", the node-side
// veth for "from" (traffic toward the pod), both for "both".
func egressLinks(t Target) []qdiscRef {
	var out []qdiscRef
	for _, p := range t.Pods {
		if t.Direction == "to" || t.Direction == "both" {
			out = append(out, qdiscRef{p.NetnsPath, podLink(p)})
		}
		if t.Direction == "from" || t.Direction == "both" {
			out = append(out, qdiscRef{nodeNetns(t, p), p.HostVeth})
		}
	}
	return out
}

func podLink(p *testbed.Pod) string {
	if p.PodVeth != "" {
		return p.PodVeth
	}
	return "eth0"
}

// nodeNetns finds the namespace of the pod's node from the target's nodes
// or, failing that, from the environment the target was resolved in.
func nodeNetns(t Target, p *testbed.Pod) string {
	for _, n := range t.allNodes {
		if n.Name == p.Node {
			return n.NetnsPath
		}
	}
	return ""
}

// bandwidth limits the rate with a token bucket filter.
type bandwidth struct {
	rateBytes     uint64
	limit, buffer uint32
	qdiscs        rootQdiscs
}

func newBandwidth(b scenarios.BandwidthSpec) (*bandwidth, error) {
	bps, err := scenarios.ParseRate(b.Rate)
	if err != nil {
		return nil, err
	}
	f := &bandwidth{rateBytes: bps / 8, limit: b.Limit, buffer: b.Buffer}
	if f.limit == 0 {
		f.limit = 100000
	}
	if f.buffer == 0 {
		f.buffer = 16000
	}
	return f, nil
}

func (f *bandwidth) Kind() string           { return scenarios.FaultBandwidth }
func (f *bandwidth) Implementation() string { return impl.TBF }

func (f *bandwidth) Inject(ctx context.Context, t Target) error {
	for _, r := range egressLinks(t) {
		err := f.qdiscs.add(r.netns, r.link, func(a netlink.QdiscAttrs) netlink.Qdisc {
			return &netlink.Tbf{QdiscAttrs: a, Rate: f.rateBytes, Limit: f.limit, Buffer: netlink.Xmittime(f.rateBytes, f.buffer)}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Activity: a token bucket acts when it runs out of tokens (overlimits:
// packets it held back) or drops; one the traffic never fills does
// nothing.
func (f *bandwidth) Activity(ctx context.Context) (results.FaultActivity, error) {
	p, d, o, err := f.qdiscs.stats()
	if err != nil {
		return results.FaultActivity{}, err
	}
	a := results.FaultActivity{Active: d+o > 0, Counters: map[string]int64{"qdisc_packets": p, "qdisc_drops": d, "qdisc_overlimits": o}}
	if a.Active {
		a.Detail = fmt.Sprintf("the token bucket held back packets %d times and dropped %d of %d", o, d, p)
	} else {
		a.Detail = fmt.Sprintf("the token bucket passed all %d packets without holding one back: the traffic stayed under %d bytes/s", p, f.rateBytes)
	}
	return a, nil
}

func (f *bandwidth) Recover(ctx context.Context, t Target) error { return f.qdiscs.removeAll() }

// netemDelay delays packets with sch_netem (on hosts that have it).
type netemDelay struct {
	latency, jitter time.Duration
	qdiscs          rootQdiscs
}

func (f *netemDelay) Kind() string           { return scenarios.FaultDelay }
func (f *netemDelay) Implementation() string { return impl.Netem }

func (f *netemDelay) Inject(ctx context.Context, t Target) error {
	if t.Peers != nil {
		return errors.New("netem delays all of a pod's traffic; a delay with a target uses nfqueue")
	}
	for _, r := range egressLinks(t) {
		err := f.qdiscs.add(r.netns, r.link, func(a netlink.QdiscAttrs) netlink.Qdisc {
			return netlink.NewNetem(a, netlink.NetemQdiscAttrs{
				Latency: uint32(f.latency.Microseconds()), Jitter: uint32(f.jitter.Microseconds()), Limit: 10000,
			})
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (f *netemDelay) Activity(ctx context.Context) (results.FaultActivity, error) {
	p, d, _, err := f.qdiscs.stats()
	if err != nil {
		return results.FaultActivity{}, err
	}
	a := dropActivity("qdisc_packets", p, "the netem qdisc")
	a.Counters["qdisc_drops"] = d
	if p > 0 {
		a.Detail = fmt.Sprintf("netem delayed %d packets by %s", p, f.latency)
	}
	return a, nil
}

func (f *netemDelay) Recover(ctx context.Context, t Target) error { return f.qdiscs.removeAll() }
