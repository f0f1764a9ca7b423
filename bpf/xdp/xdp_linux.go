package xdp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/meshbench/meshbench/bpf/internal/memlock"
	"github.com/meshbench/meshbench/bpf/internal/percpu"

	"github.com/cilium/ebpf/link"
)

// counterNames are the names of the program's counters, in the order of the
// CNT_ enum in xdp.c.
var counterNames = []string{"xdp_seen", "xdp_redirected", "xdp_passed", "xdp_no_socket"}

// MaxSlots is the number of interfaces one Program can serve.
const MaxSlots = 256

// Program is the loaded XDP program and its maps. It is attached to
// interfaces with Attach and removed from all of them by Close.
type Program struct {
	objs  xdpObjects
	links map[int]link.Link
}

// Load loads the program. It redirects nothing until destinations are
// added with Route.
func Load() (*Program, error) {
	p := &Program{links: map[int]link.Link{}}
	if err := loadXdpObjects(&p.objs, nil); err != nil {
		return nil, fmt.Errorf("load xdp objects: %w", err)
	}
	return p, nil
}

// Route says whether packets to dst are redirected (true) or passed to the
// kernel (false); the longest matching prefix decides, and destinations
// that match none are passed.
func (p *Program) Route(dst netip.Prefix, redirect bool) error {
	if !dst.Addr().Is4() {
		return fmt.Errorf("route %s: not IPv4", dst)
	}
	dst = dst.Masked()
	a := dst.Addr().As4()
	key := xdpLpmKey{Prefixlen: uint32(dst.Bits()), Ip4: binary.NativeEndian.Uint32(a[:])}
	var v uint32
	if redirect {
		v = 1
	}
	if err := p.objs.Dsts.Put(&key, v); err != nil {
		return fmt.Errorf("route %s: %w", dst, err)
	}
	return nil
}

// Attach attaches the program to the interface ifindex in native (driver)
// mode and redirects its packets to the socket set with SetSocket(slot).
func (p *Program) Attach(ifindex int, slot uint32) error {
	if slot >= MaxSlots {
		return fmt.Errorf("attach xdp to ifindex %d: slot %d out of range", ifindex, slot)
	}
	if err := p.objs.Slots.Put(uint32(ifindex), slot); err != nil {
		return fmt.Errorf("attach xdp to ifindex %d: set slot: %w", ifindex, err)
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: p.objs.XdpRedirectPod, Interface: ifindex, Flags: link.XDPDriverMode})
	if err != nil {
		_ = p.objs.Slots.Delete(uint32(ifindex))
		return fmt.Errorf("attach xdp to ifindex %d: %w", ifindex, err)
	}
	p.links[ifindex] = l
	return nil
}

// SetSocket puts the AF_XDP socket fd into the XSKMAP at slot.
func (p *Program) SetSocket(slot uint32, fd int) error {
	if err := p.objs.Xsks.Put(slot, uint32(fd)); err != nil {
		return fmt.Errorf("set xsk slot %d: %w", slot, err)
	}
	return nil
}

// Counters returns the program's counters summed over CPUs.
func (p *Program) Counters() (map[string]int64, error) {
	c, err := percpu.Sum(p.objs.Counters, counterNames)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(c))
	for k, v := range c {
		out[k] = int64(v)
	}
	return out, nil
}

// Close detaches the program from every interface and releases its maps.
func (p *Program) Close() error {
	var errs []error
	for ifindex, l := range p.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach xdp from ifindex %d: %w", ifindex, err))
		}
		delete(p.links, ifindex)
	}
	if err := p.objs.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// MemlockBytes returns the kernel memory its maps and programs hold (their
// memlock, as the kernel accounts it): memory no process's RSS shows.
func (p *Program) MemlockBytes() (int64, error) {
	return memlock.Bytes(&p.objs.xdpMaps, &p.objs.xdpPrograms)
}
