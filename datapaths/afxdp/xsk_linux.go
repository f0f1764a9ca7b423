package afxdp

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Socket geometry. Each socket has its own UMEM: the first fillSize
// frames feed the fill ring (receive), the next ringSize are the transmit
// pool. The fill ring is twice the RX ring so that the kernel still has
// frames to fill when the forwarder was descheduled for a moment. Forwarding copies a frame from the receiving socket's UMEM into a
// transmit frame of the sending one, so no frame is ever owned by two
// sockets (copy mode copies anyway).
const (
	frameSize  = 2048
	ringSize   = 2048 // RX, TX and completion rings; a power of two
	fillSize   = 2 * ringSize
	numFrames  = fillSize + ringSize
	txBase     = fillSize * frameSize
	kickBudget = 16 // sendto calls per flush at most
)

// ring is one of the four single-producer single-consumer rings the kernel
// shares with the socket. Indexes are free-running uint32s; the side that
// does not own an index reads it atomically.
type ring struct {
	mem      []byte
	producer *uint32
	consumer *uint32
	flags    *uint32
	descs    unsafe.Pointer
	mask     uint32
}

func (r *ring) addr(i uint32) *uint64 {
	return (*uint64)(unsafe.Add(r.descs, uintptr(i&r.mask)*8))
}

func (r *ring) desc(i uint32) *unix.XDPDesc {
	return (*unix.XDPDesc)(unsafe.Add(r.descs, uintptr(i&r.mask)*unsafe.Sizeof(unix.XDPDesc{})))
}

// Socket is an AF_XDP socket bound in copy mode to queue 0 of one
// interface. Only the forwarder's goroutine uses its rings; the counters
// may be read from any goroutine.
type Socket struct {
	iface   string
	ifindex int
	fd      int
	umem    []byte
	fill    ring
	comp    ring
	rx      ring
	tx      ring
	txFree  []uint64
	pending uint32 // TX descriptors produced and not yet kicked

	rxFrames, txFrames, dropped atomic.Int64
}

func setsockoptStruct(fd, opt int, p unsafe.Pointer, size uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), size, 0)
	if e != 0 {
		return e
	}
	return nil
}

func getsockoptStruct(fd, opt int, p unsafe.Pointer, size uintptr) error {
	l := uint32(size)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return e
	}
	return nil
}

// OpenSocket creates an AF_XDP socket with its UMEM and rings and binds it
// in copy mode to queue 0 of the interface.
func OpenSocket(iface string, ifindex int) (_ *Socket, err error) {
	s := &Socket{iface: iface, ifindex: ifindex, fd: -1}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open AF_XDP socket for %s: %w", iface, err)
	}
	s.fd = fd
	s.umem, err = unix.Mmap(-1, 0, numFrames*frameSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("map UMEM for %s: %w", iface, err)
	}
	reg := unix.XDPUmemReg{Addr: uint64(uintptr(unsafe.Pointer(&s.umem[0]))), Len: uint64(len(s.umem)), Size: frameSize}
	if err := setsockoptStruct(fd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
		return nil, fmt.Errorf("register UMEM for %s: %w", iface, err)
	}
	for opt, size := range map[int]int{unix.XDP_UMEM_FILL_RING: fillSize, unix.XDP_UMEM_COMPLETION_RING: ringSize, unix.XDP_RX_RING: ringSize, unix.XDP_TX_RING: ringSize} {
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, opt, size); err != nil {
			return nil, fmt.Errorf("size ring %d of %s: %w", opt, iface, err)
		}
	}
	var off unix.XDPMmapOffsets
	if err := getsockoptStruct(fd, unix.XDP_MMAP_OFFSETS, unsafe.Pointer(&off), unsafe.Sizeof(off)); err != nil {
		return nil, fmt.Errorf("ring offsets of %s: %w", iface, err)
	}
	maps := []struct {
		r     *ring
		o     unix.XDPRingOffset
		pgoff int64
		esz   uint64
		n     uint64
	}{
		{&s.fill, off.Fr, unix.XDP_UMEM_PGOFF_FILL_RING, 8, fillSize},
		{&s.comp, off.Cr, unix.XDP_UMEM_PGOFF_COMPLETION_RING, 8, ringSize},
		{&s.rx, off.Rx, unix.XDP_PGOFF_RX_RING, uint64(unsafe.Sizeof(unix.XDPDesc{})), ringSize},
		{&s.tx, off.Tx, unix.XDP_PGOFF_TX_RING, uint64(unsafe.Sizeof(unix.XDPDesc{})), ringSize},
	}
	for _, m := range maps {
		mem, err := unix.Mmap(fd, m.pgoff, int(m.o.Desc+m.n*m.esz), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return nil, fmt.Errorf("map ring of %s: %w", iface, err)
		}
		base := unsafe.Pointer(&mem[0])
		*m.r = ring{
			mem:      mem,
			producer: (*uint32)(unsafe.Add(base, m.o.Producer)),
			consumer: (*uint32)(unsafe.Add(base, m.o.Consumer)),
			flags:    (*uint32)(unsafe.Add(base, m.o.Flags)),
			descs:    unsafe.Add(base, m.o.Desc),
			mask:     uint32(m.n - 1),
		}
	}
	// Give the kernel every receive frame before binding.
	prod := atomic.LoadUint32(s.fill.producer)
	for i := range uint32(fillSize) {
		*s.fill.addr(prod + i) = uint64(i) * frameSize
	}
	atomic.StoreUint32(s.fill.producer, prod+fillSize)
	s.txFree = make([]uint64, 0, ringSize)
	for i := range uint64(ringSize) {
		s.txFree = append(s.txFree, txBase+i*frameSize)
	}
	sa := &unix.SockaddrXDP{Flags: unix.XDP_COPY, Ifindex: uint32(ifindex), QueueID: 0}
	if err := unix.Bind(fd, sa); err != nil {
		return nil, fmt.Errorf("bind AF_XDP socket to %s queue 0 (copy mode): %w", iface, err)
	}
	return s, nil
}

// FD returns the socket's file descriptor, for the XSKMAP.
func (s *Socket) FD() int { return s.fd }

// Interface returns the name of the interface the socket is bound to.
func (s *Socket) Interface() string { return s.iface }

// receive calls fn with each received frame (valid only during the call),
// then returns the frames to the fill ring. It returns how many it read.
func (s *Socket) receive(max uint32, fn func(frame []byte)) int {
	prod := atomic.LoadUint32(s.rx.producer)
	cons := *s.rx.consumer
	n := prod - cons
	if n == 0 {
		return 0
	}
	if n > max {
		n = max
	}
	fprod := *s.fill.producer
	for i := range n {
		d := s.rx.desc(cons + i)
		fn(s.umem[d.Addr : d.Addr+uint64(d.Len)])
		// The frame returns to the fill ring at once: it was copied out.
		// The fill ring has room for every receive frame, so it cannot
		// overflow.
		*s.fill.addr(fprod + i) = d.Addr &^ (frameSize - 1)
	}
	atomic.StoreUint32(s.rx.consumer, cons+n)
	atomic.StoreUint32(s.fill.producer, fprod+n)
	s.rxFrames.Add(int64(n))
	return int(n)
}

// reclaim moves completed transmit frames back to the free pool.
func (s *Socket) reclaim() {
	prod := atomic.LoadUint32(s.comp.producer)
	cons := *s.comp.consumer
	for i := cons; i != prod; i++ {
		s.txFree = append(s.txFree, *s.comp.addr(i))
	}
	atomic.StoreUint32(s.comp.consumer, prod)
}

// send copies frame into a transmit frame and puts it on the TX ring; the
// caller flushes. It reports false, and counts a drop, when no transmit
// frame is free.
func (s *Socket) send(frame []byte) bool {
	if len(s.txFree) == 0 {
		s.reclaim()
		if len(s.txFree) == 0 {
			s.flush()
			s.reclaim()
		}
		if len(s.txFree) == 0 {
			return false
		}
	}
	addr := s.txFree[len(s.txFree)-1]
	s.txFree = s.txFree[:len(s.txFree)-1]
	n := copy(s.umem[addr:addr+frameSize], frame)
	prod := *s.tx.producer
	d := s.tx.desc(prod)
	d.Addr, d.Len, d.Options = addr, uint32(n), 0
	atomic.StoreUint32(s.tx.producer, prod+1)
	s.pending++
	s.txFrames.Add(1)
	return true
}

// flush asks the kernel to transmit what is on the TX ring. In copy mode
// each sendto sends a bounded batch, so it kicks until the ring is drained
// or the budget is spent; what is left stays pending for the next flush.
func (s *Socket) flush() {
	if s.pending == 0 {
		return
	}
	prod := *s.tx.producer
	for range kickBudget {
		_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
		if e != 0 && e != unix.EAGAIN && e != unix.EBUSY && e != unix.ENOBUFS && e != unix.ENETDOWN {
			break
		}
		if atomic.LoadUint32(s.tx.consumer) == prod {
			break
		}
	}
	s.pending = prod - atomic.LoadUint32(s.tx.consumer)
	s.reclaim()
}

// Stats returns the socket's counters, the kernel's included.
func (s *Socket) Stats() SocketStats {
	st := SocketStats{Interface: s.iface, RxFrames: s.rxFrames.Load(), TxFrames: s.txFrames.Load(), Dropped: s.dropped.Load(), MappedBytes: s.MappedBytes()}
	var ks unix.XDPStatistics
	if s.fd >= 0 && getsockoptStruct(s.fd, unix.XDP_STATISTICS, unsafe.Pointer(&ks), unsafe.Sizeof(ks)) == nil {
		st.FillRingEmpty = int64(ks.Rx_fill_ring_empty_descs)
		st.KernelRxDropped = int64(ks.Rx_dropped)
		st.RxRingFull = int64(ks.Rx_ring_full)
		st.Dropped += int64(ks.Rx_dropped + ks.Rx_invalid_descs + ks.Tx_invalid_descs + ks.Rx_ring_full)
	}
	return st
}

// MappedBytes returns the bytes the socket maps: its UMEM (numFrames ×
// frameSize) and its fill, completion, RX and TX rings.
func (s *Socket) MappedBytes() int64 {
	n := int64(len(s.umem))
	for _, r := range []*ring{&s.fill, &s.comp, &s.rx, &s.tx} {
		n += int64(len(r.mem))
	}
	return n
}

// Close closes the socket and unmaps its rings and UMEM.
func (s *Socket) Close() error {
	var errs []error
	if s.fd >= 0 {
		if err := unix.Close(s.fd); err != nil {
			errs = append(errs, fmt.Errorf("close AF_XDP socket of %s: %w", s.iface, err))
		}
		s.fd = -1
	}
	for _, r := range []*ring{&s.fill, &s.comp, &s.rx, &s.tx} {
		if r.mem != nil {
			if err := unix.Munmap(r.mem); err != nil {
				errs = append(errs, err)
			}
			*r = ring{}
		}
	}
	if s.umem != nil {
		if err := unix.Munmap(s.umem); err != nil {
			errs = append(errs, err)
		}
		s.umem = nil
	}
	return errors.Join(errs...)
}
