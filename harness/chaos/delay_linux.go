package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshbench/meshbench/harness/chaos/impl"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"golang.org/x/sys/unix"

	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/internal/nsutil"
	"github.com/meshbench/meshbench/scenarios"
)

func newDelay(using string, d scenarios.DelaySpec, tag string, env *Env) (Fault, error) {
	latency, jitter := time.Duration(d.Latency), time.Duration(d.Jitter)
	if latency <= 0 || jitter < 0 || jitter > latency {
		return nil, fmt.Errorf("delay: latency %s, jitter %s: want latency > 0 and 0 <= jitter <= latency", d.Latency, d.Jitter)
	}
	if using == impl.Netem {
		return &netemDelay{latency: latency, jitter: jitter}, nil
	}
	return &nfqDelay{latency: latency, jitter: jitter, tag: tag, env: env}, nil
}

// nextQueue numbers NFQUEUE queues; queues are per network namespace, but
// distinct numbers keep two faults on one pod apart.
var nextQueue atomic.Uint32

func init() { nextQueue.Store(4200) }

// queueLen bounds the packets held at once per pod; beyond it (and when
// this process is gone, thanks to --queue-bypass and fail-open) packets
// pass undelayed instead of being dropped.
const queueLen = 8192

// nfqDelay delays packets by sending them, with an iptables NFQUEUE rule in
// the pod's namespace, to a netlink queue this process reads: each packet
// is held for the latency and then accepted, in arrival order. In a pod
// reached through a node agent, the queue is read by a delay-queue process
// the agent starts in the pod (DelayQueueMain).
type nfqDelay struct {
	latency, jitter time.Duration
	tag             string
	env             *Env
	rules           ruleSet
	mu              sync.Mutex
	queues          []*delayQueue
	remote          []*remoteQueue
	held            atomic.Int64 // packets the queues held (remote ones: once stopped)
}

func (f *nfqDelay) Kind() string           { return scenarios.FaultDelay }
func (f *nfqDelay) Implementation() string { return impl.NFQueue }

type held struct {
	id  uint32
	due time.Time
}

type delayQueue struct {
	nf     *nfqueue.Nfqueue
	cancel context.CancelFunc
	items  chan held
	flush  atomic.Bool
	done   chan struct{}
	mu     sync.Mutex
	last   time.Time // latest due time, to keep packets in order
}

func (f *nfqDelay) Inject(ctx context.Context, t Target) error {
	for _, p := range t.Pods {
		num := uint16(nextQueue.Add(1))
		if p.Host != nil {
			q, err := f.startRemote(ctx, p, num)
			if err != nil {
				return err
			}
			f.mu.Lock()
			f.remote = append(f.remote, q)
			f.mu.Unlock()
		} else {
			if err := nsutil.RefuseRoot(p.NetnsPath); err != nil {
				return err
			}
			q, err := f.open(p.NetnsPath, num)
			if err != nil {
				return fmt.Errorf("nfqueue in %s: %w", p.Name, err)
			}
			f.mu.Lock()
			f.queues = append(f.queues, q)
			f.mu.Unlock()
		}
		target := append(comment(f.tag), "-j", "NFQUEUE", "--queue-num", strconv.Itoa(int(num)), "--queue-bypass")
		if t.Direction == "to" || t.Direction == "both" {
			if err := f.queueRule(ctx, p.Netns(), "OUTPUT", "-o", "-d", t.Peers, p, target); err != nil {
				return err
			}
		}
		if t.Direction == "from" || t.Direction == "both" {
			if err := f.queueRule(ctx, p.Netns(), "INPUT", "-i", "-s", t.Peers, p, target); err != nil {
				return err
			}
		}
	}
	return nil
}

// queueRule sends the pod's packets of chain (not on loopback; to or from
// the peers when there are any) to the queue.
func (f *nfqDelay) queueRule(ctx context.Context, ns nsutil.Netns, chain, ifFlag, addrFlag string, peers []*testbed.Pod, self *testbed.Pod, target []string) error {
	spec := []string{"!", ifFlag, "lo"}
	if peers != nil {
		addrs := ips(peers, self)
		if addrs == "" {
			return nil
		}
		spec = append(spec, addrFlag, addrs)
	}
	return f.rules.add(ctx, rule{ns, chain, append(spec, target...)})
}

// open binds queue num in the namespace at path (the netlink socket is
// created on a thread inside it, so it belongs to it) and starts holding
// packets.
func (f *nfqDelay) open(path string, num uint16) (*delayQueue, error) {
	var q *delayQueue
	err := nsutil.Do(path, func() error {
		var err error
		q, err = openQueue(num, f.latency, f.jitter, &f.held)
		return err
	})
	return q, err
}

// openQueue binds queue num in the calling thread's network namespace and
// holds each packet for latency ± jitter (in arrival order), counting the
// packets it held in held.
func openQueue(num uint16, latency, jitter time.Duration, heldCount *atomic.Int64) (*delayQueue, error) {
	nf, err := nfqueue.Open(&nfqueue.Config{
		NfQueue:      num,
		MaxQueueLen:  queueLen,
		MaxPacketLen: 0,
		Copymode:     nfqueue.NfQnlCopyMeta,
		Flags:        nfqueue.NfQaCfgFlagFailOpen | nfqueue.NfQaCfgFlagGSO,
		AfFamily:     unix.AF_INET,
		WriteTimeout: time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("open queue %d: %w", num, err)
	}
	qctx, cancel := context.WithCancel(context.Background())
	q := &delayQueue{nf: nf, cancel: cancel, items: make(chan held, queueLen), done: make(chan struct{})}
	go q.release()
	hook := func(a nfqueue.Attribute) int {
		if a.PacketID == nil {
			return 0
		}
		now := time.Now()
		d := latency
		if jitter > 0 {
			d += time.Duration(rand.Int64N(int64(2*jitter)+1)) - jitter
		}
		q.mu.Lock()
		due := now.Add(d)
		if due.Before(q.last) {
			due = q.last
		}
		q.last = due
		q.mu.Unlock()
		heldCount.Add(1)
		select {
		case q.items <- held{id: *a.PacketID, due: due}:
		default:
			_ = nf.SetVerdict(*a.PacketID, nfqueue.NfAccept)
		}
		return 0
	}
	errfn := func(err error) int {
		if qctx.Err() != nil {
			return 1
		}
		return 0 // ENOBUFS and timeouts: keep reading
	}
	if err := nf.RegisterWithErrorFunc(qctx, hook, errfn); err != nil {
		cancel()
		nf.Close()
		close(q.items)
		<-q.done
		return nil, fmt.Errorf("register queue %d: %w", num, err)
	}
	return q, nil
}

// release accepts each held packet when it is due, or at once when the
// queue is being flushed.
func (q *delayQueue) release() {
	defer close(q.done)
	for h := range q.items {
		if wait := time.Until(h.due); wait > 0 && !q.flush.Load() {
			// nanosleep(2) blocks this thread on a kernel hrtimer: about
			// 0.1 ms late, where the runtime's timers are up to 1 ms late.
			ts := unix.NsecToTimespec(int64(wait))
			for unix.Nanosleep(&ts, &ts) == unix.EINTR {
			}
		}
		_ = q.nf.SetVerdict(h.id, nfqueue.NfAccept)
	}
}

// close releases every held packet and unbinds the queue.
func (q *delayQueue) close() error {
	q.flush.Store(true)
	// Packets already queued in the kernel keep arriving for a moment after
	// the rule is gone; let the hook pass them on before unbinding.
	deadline := time.Now().Add(200 * time.Millisecond)
	for len(q.items) > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	q.cancel()
	err := q.nf.Close()
	close(q.items)
	<-q.done
	return err
}

func (f *nfqDelay) Activity(ctx context.Context) (results.FaultActivity, error) {
	a, err := f.rules.activity(ctx, "its NFQUEUE rules")
	if err != nil {
		return a, err
	}
	n := f.held.Load()
	f.mu.Lock()
	for _, q := range f.remote {
		n += q.out.heldCount()
	}
	f.mu.Unlock()
	a.Counters["queued"] = n
	a.Active = n > 0
	if n > 0 {
		a.Detail = fmt.Sprintf("NFQUEUE held %d packets for %s", n, f.latency)
	} else if a.Counters["rule_packets"] > 0 {
		a.Detail = fmt.Sprintf("its rules matched %d packets, but none reached the queue", a.Counters["rule_packets"])
	}
	return a, nil
}

func (f *nfqDelay) Recover(ctx context.Context, t Target) error {
	// Rules first, so that no new packet is queued, then the queues.
	errs := []error{f.rules.removeAll(ctx)}
	f.mu.Lock()
	qs, rs := f.queues, f.remote
	f.queues, f.remote = nil, nil
	f.mu.Unlock()
	for _, q := range qs {
		if err := q.close(); err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, fmt.Errorf("close nfqueue: %w", err))
		}
	}
	for _, q := range rs {
		n, err := q.stop(ctx)
		f.held.Add(n)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
