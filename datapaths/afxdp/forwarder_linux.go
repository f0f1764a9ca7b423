package afxdp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/meshbench/meshbench/bpf/xdp"
)

// batch is the most frames read from one socket before the others get a
// turn.
const batch = 64

// Forwarder is one node's user-space fast path: the XDP program on the
// local pods' host veths, an AF_XDP socket per veth and one on the uplink,
// and the loop that moves frames between them. Create it inside the node's
// network namespace.
type Forwarder struct {
	cfg    *Config
	log    *slog.Logger
	prog   *xdp.Program
	r      *router
	outs   []*Socket // local pods' veths in router output order, then the uplink
	rxFDs  []unix.PollFd
	spin   time.Duration
	closed bool
}

// NewForwarder loads and attaches the XDP program and opens the sockets of
// cfg's node. On error it removes what it set up.
func NewForwarder(cfg *Config, log *slog.Logger) (_ *Forwarder, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r, locals, err := newRouter(cfg)
	if err != nil {
		return nil, fmt.Errorf("forwarder: %w", err)
	}
	f := &Forwarder{cfg: cfg, log: log, r: r, spin: DefaultSpin}
	defer func() {
		if err != nil {
			_ = f.Close()
		}
	}()
	f.prog, err = xdp.Load()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	// Redirect what goes to pods and VIPs; pass what goes to the gateways
	// (the node itself).
	for _, n := range cfg.Nodes {
		if err := f.prog.Route(n.PodCIDR, true); err != nil {
			return nil, err
		}
		if n.Gateway.IsValid() {
			if err := f.prog.Route(netip.PrefixFrom(n.Gateway, 32), false); err != nil {
				return nil, err
			}
		}
	}
	if err := f.prog.Route(VIPRange, true); err != nil {
		return nil, err
	}
	ifindexes := make([]int, 0, len(locals)+1)
	for _, p := range locals {
		l, err := netlink.LinkByName(p.HostVeth)
		if err != nil {
			return nil, fmt.Errorf("find host veth %s of pod %s: %w", p.HostVeth, p.Name, err)
		}
		// One socket, on queue 0: frames arriving on another queue could
		// not be redirected to it.
		if q := l.Attrs().NumRxQueues; q > 1 {
			return nil, fmt.Errorf("host veth %s of pod %s has %d RX queues; the forwarder binds queue 0 only: create the veth with one", p.HostVeth, p.Name, q)
		}
		s, err := OpenSocket(p.HostVeth, l.Attrs().Index)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		f.outs = append(f.outs, s)
		ifindexes = append(ifindexes, l.Attrs().Index)
	}
	up := cfg.Nodes[cfg.Node].Uplink
	ul, err := netlink.LinkByName(up)
	if err != nil {
		return nil, fmt.Errorf("find uplink %s: %w", up, err)
	}
	us, err := OpenSocket(up, ul.Attrs().Index)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	f.outs = append(f.outs, us)
	// Sockets first, then the program: no packet is redirected to a slot
	// without a socket.
	for i, ifindex := range ifindexes {
		if err := f.prog.SetSocket(uint32(i), f.outs[i].FD()); err != nil {
			return nil, err
		}
		if err := f.prog.Attach(ifindex, uint32(i)); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		f.rxFDs = append(f.rxFDs, unix.PollFd{Fd: int32(f.outs[i].FD()), Events: unix.POLLIN})
		log.Debug("attached", "iface", f.outs[i].Interface(), "ifindex", ifindex)
	}
	return f, nil
}

// DefaultSpin is how long the forwarder busy-polls its sockets after the
// last frame before it sleeps in poll(2).
const DefaultSpin = 50 * time.Microsecond

// SetSpin sets how long Run busy-polls after the last frame before it
// sleeps (0: sleep at once). Call it before Run.
func (f *Forwarder) SetSpin(d time.Duration) { f.spin = d }

// ErrUnavailable is wrapped by NewForwarder's errors when the kernel
// refuses XDP or AF_XDP.
var ErrUnavailable = errors.New("XDP or AF_XDP unavailable")

// Run moves frames until ctx ends. It must not run concurrently with
// itself or Close.
func (f *Forwarder) Run(ctx context.Context) error {
	rx := f.outs[:len(f.rxFDs)]
	var in *Socket
	handle := func(frame []byte) {
		out, ok := f.r.forward(frame)
		if !ok {
			in.dropped.Add(1)
			return
		}
		if !f.outs[out].send(frame) {
			f.outs[out].dropped.Add(1)
		}
	}
	lastFrame := time.Now()
	for ctx.Err() == nil {
		got := 0
		for _, s := range rx {
			in = s
			got += s.receive(batch, handle)
		}
		for _, s := range f.outs {
			s.flush()
		}
		if got > 0 {
			lastFrame = time.Now()
			continue
		}
		// Spin a while before sleeping in poll: the answer to a frame, or
		// the next one under load, usually comes within the spin window,
		// and a wake-up from poll costs tens of microseconds.
		if time.Since(lastFrame) < f.spin {
			continue
		}
		// Sleep until a frame arrives; only briefly when transmit frames
		// wait for the next kick.
		timeout := 50
		for _, s := range f.outs {
			if s.pending > 0 {
				timeout = 1
			}
		}
		for i := range f.rxFDs {
			f.rxFDs[i].Revents = 0
		}
		if _, err := unix.Poll(f.rxFDs, timeout); err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("poll AF_XDP sockets: %w", err)
		}
	}
	return nil
}

// Stats returns the forwarder's counters; safe while Run runs.
func (f *Forwarder) Stats() Stats {
	st := Stats{Ready: true, Node: f.cfg.Nodes[f.cfg.Node].Name}
	for _, s := range f.outs {
		ss := s.Stats()
		st.Sockets = append(st.Sockets, ss)
		st.RxFrames += ss.RxFrames
		st.TxFrames += ss.TxFrames
		st.Dropped += ss.Dropped
		st.FillRingEmpty += ss.FillRingEmpty
		st.RxRingFull += ss.RxRingFull
	}
	st.NATHits = f.r.natHits.Load()
	st.ReverseNATHits = f.r.reverseNATHits.Load()
	st.DropMalformed = f.r.drops[dropMalformed].Load()
	st.DropNoRoute = f.r.drops[dropNoRoute].Load()
	st.DropTTL = f.r.drops[dropTTL].Load()
	if f.prog != nil {
		if c, err := f.prog.Counters(); err == nil {
			st.XDP = c
		}
		if n, err := f.prog.MemlockBytes(); err == nil {
			st.BPFBytes = n
		}
	}
	return st
}

// Close detaches the XDP program from every veth and closes the sockets.
// It is safe to call more than once.
func (f *Forwarder) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	var errs []error
	if f.prog != nil {
		errs = append(errs, f.prog.Close())
	}
	for _, s := range f.outs {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}
