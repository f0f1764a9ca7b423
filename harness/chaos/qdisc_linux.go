package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/meshbench/meshbench/harness/chaos/impl"

	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/internal/nsutil"
	"github.com/meshbench/meshbench/scenarios"
)

// qdiscRef is one root qdisc a fault installed.
type qdiscRef struct {
	netns nsutil.Netns
	link  string
}

// handle is the root handle of the qdiscs chaos installs ("MB").
const handle = "4d42:"

// rootQdiscs installs root qdiscs on pod interfaces and removes exactly
// those it installed, which returns the interface to its default qdisc.
// It runs tc in the interface's namespace through the namespace's Host,
// so the same code acts on this machine and, through a node agent, on a
// cluster's node.
type rootQdiscs struct {
	mu        sync.Mutex
	installed []qdiscRef
}

// tcQdisc is one qdisc of `tc -s -j qdisc show`.
type tcQdisc struct {
	Kind       string `json:"kind"`
	Handle     string `json:"handle"`
	Root       bool   `json:"root"`
	Packets    int64  `json:"packets"`
	Drops      int64  `json:"drops"`
	Overlimits int64  `json:"overlimits"`
}

// showQdiscs lists link's qdiscs, with statistics.
func showQdiscs(ctx context.Context, ns nsutil.Netns, link string) ([]tcQdisc, error) {
	out, err := ns.Exec(ctx, []string{"tc", "-s", "-j", "qdisc", "show", "dev", link}, "")
	if err != nil {
		return nil, err
	}
	var list []tcQdisc
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, fmt.Errorf("tc qdisc show dev %s: %w", link, err)
	}
	return list, nil
}

// add installs the root qdisc of link in ns that params describe ("tbf
// rate ..."). It refuses an interface whose root qdisc was configured by
// someone else (a non-zero handle), which it would otherwise replace.
func (q *rootQdiscs) add(ctx context.Context, ns nsutil.Netns, link string, params ...string) error {
	if ns.Host == nil {
		if err := nsutil.RefuseRoot(ns.Path); err != nil {
			return err
		}
	}
	list, err := showQdiscs(ctx, ns, link)
	if err != nil {
		return err
	}
	for _, old := range list {
		if old.Root && old.Handle != "0:" && old.Handle != "" {
			return fmt.Errorf("%s already has root qdisc %s %s: refusing to replace it", link, old.Kind, old.Handle)
		}
	}
	argv := append([]string{"tc", "qdisc", "add", "dev", link, "root", "handle", handle}, params...)
	if _, err := ns.Exec(ctx, argv, ""); err != nil {
		return fmt.Errorf("add %s qdisc on %s: %w", first(params), link, err)
	}
	q.mu.Lock()
	q.installed = append(q.installed, qdiscRef{ns, link})
	q.mu.Unlock()
	return nil
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// removeAll deletes the installed qdiscs; interfaces or namespaces that
// are gone count as cleaned.
func (q *rootQdiscs) removeAll(ctx context.Context) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	var errs []error
	var kept []qdiscRef
	for _, r := range q.installed {
		if _, err := os.Stat(r.netns.Path); r.netns.Host == nil && errors.Is(err, os.ErrNotExist) {
			continue
		}
		list, err := showQdiscs(ctx, r.netns, r.link)
		if gone(err) {
			continue
		}
		for _, qd := range list {
			if err != nil || !qd.Root || qd.Handle != handle {
				continue
			}
			_, err = r.netns.Exec(ctx, []string{"tc", "qdisc", "del", "dev", r.link, "root", "handle", handle}, "")
			if gone(err) {
				err = nil
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remove qdisc of %s: %w", r.link, err))
			kept = append(kept, r)
		}
	}
	q.installed = kept
	return errors.Join(errs...)
}

// gone reports whether err says the interface or its namespace is gone.
func gone(err error) bool {
	var ee *nsutil.ExitError
	return err != nil && (errors.As(err, &ee) && strings.Contains(ee.Stderr, "Cannot find device") || errors.Is(err, os.ErrNotExist))
}

// stats sums the statistics of the installed qdiscs.
func (q *rootQdiscs) stats(ctx context.Context) (packets, drops, overlimits int64, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, r := range q.installed {
		list, err := showQdiscs(ctx, r.netns, r.link)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("qdisc statistics: %w", err)
		}
		for _, qd := range list {
			if qd.Root && qd.Handle == handle {
				packets += qd.Packets
				drops += qd.Drops
				overlimits += qd.Overlimits
			}
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
			out = append(out, qdiscRef{p.Netns(), podLink(p)})
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
func nodeNetns(t Target, p *testbed.Pod) nsutil.Netns {
	for _, n := range t.allNodes {
		if n.Name == p.Node {
			return n.Netns()
		}
	}
	return nsutil.Netns{}
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
		err := f.qdiscs.add(ctx, r.netns, r.link, "tbf", "rate", strconv.FormatUint(f.rateBytes*8, 10)+"bit",
			"burst", strconv.FormatUint(uint64(f.buffer), 10), "limit", strconv.FormatUint(uint64(f.limit), 10))
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
	p, d, o, err := f.qdiscs.stats(ctx)
	if err != nil {
		return results.FaultActivity{}, err
	}
	a := results.FaultActivity{Active: d+o > 0, Counters: map[string]int64{"qdisc_packets": p, "qdisc_drops": d, "qdisc_overlimits": o}}
	if a.Active {
		a.Detail = fmt.Sprintf("the token bucket held back packets %d times, dropped %d and passed %d", o, d, p)
	} else {
		a.Detail = fmt.Sprintf("the token bucket passed all %d packets without holding one back: the traffic stayed under %d bytes/s", p, f.rateBytes)
	}
	return a, nil
}

func (f *bandwidth) Recover(ctx context.Context, t Target) error { return f.qdiscs.removeAll(ctx) }

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
		err := f.qdiscs.add(ctx, r.netns, r.link, "netem", "delay", usec(f.latency), usec(f.jitter), "limit", "10000")
		if err != nil {
			return err
		}
	}
	return nil
}

func (f *netemDelay) Activity(ctx context.Context) (results.FaultActivity, error) {
	p, d, _, err := f.qdiscs.stats(ctx)
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

func (f *netemDelay) Recover(ctx context.Context, t Target) error { return f.qdiscs.removeAll(ctx) }

// usec is d as tc reads a time ("1500us").
func usec(d time.Duration) string { return strconv.FormatInt(d.Microseconds(), 10) + "us" }
