package workload

import (
	"encoding/binary"
	"io"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// stampFlags ask the kernel for a software timestamp when each write's
// last byte is handed to the device (TX, reported on the error queue with
// the byte's offset as its key) and when each segment arrives (RX,
// reported with the read that returns it). Set after connect: OPT_ID
// before it is EINVAL.
const stampFlags = unix.SOF_TIMESTAMPING_TX_SOFTWARE | unix.SOF_TIMESTAMPING_RX_SOFTWARE |
	unix.SOF_TIMESTAMPING_SOFTWARE | unix.SOF_TIMESTAMPING_OPT_ID |
	unix.SOF_TIMESTAMPING_OPT_ID_TCP | unix.SOF_TIMESTAMPING_OPT_TSONLY

// stamper reads a connection with recvmsg, keeping the kernel's timestamps.
// One request at a time: a request's TX stamp is that of its last byte,
// its RX stamp that of the read that completed its response (the kernel
// reports, with each read, the stamp of the last segment it copied).
type stamper struct {
	on  bool
	tcp *net.TCPConn
	rc  syscall.RawConn
	// sentBytes counts the bytes written since the option was set: the
	// key of a write's TX stamp is the offset of its last byte.
	sentBytes uint64
	key       uint32
	tx, rx    int64 // Unix ns; 0: not (yet) stamped
	// Buffers of recvmsg, allocated once.
	oob, eoob []byte
	iov       unix.Iovec
	msg       unix.Msghdr
}

// init prepares c's reads and, when stamps is set, turns on the kernel's
// timestamps (where they cannot be, the connection goes without).
func (c *clientConn) init(stamps bool) error {
	s := &c.ts
	tc, ok := c.conn.(*trackedConn)
	if !ok {
		return nil
	}
	tcp, ok := tc.Conn.(*net.TCPConn)
	if !ok {
		return nil
	}
	s.tcp = tcp
	if !stamps {
		return nil
	}
	rc, err := tcp.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPING, stampFlags)
	}); err != nil || serr != nil {
		return nil // no stamps on this connection
	}
	s.rc, s.on = rc, true
	s.oob, s.eoob = make([]byte, 128), make([]byte, 128)
	return nil
}

// reset forgets the previous response's RX stamp.
func (s *stamper) reset() { s.rx = 0 }

// sent notes that n bytes were written and takes their TX stamp if the
// kernel has it already (on a device without a queue it does).
func (s *stamper) sent(c *clientConn, n int) {
	if !s.on {
		return
	}
	s.sentBytes += uint64(n)
	s.key = uint32(s.sentBytes - 1)
	s.tx = 0
	s.readTX()
}

// stamps returns the request's TX and RX stamps (Unix ns, 0 when the
// kernel gave none).
func (s *stamper) stamps(c *clientConn) (tx, rx int64) {
	if !s.on {
		return 0, 0
	}
	if s.tx == 0 {
		s.readTX()
	}
	return s.tx, s.rx
}

// read reads into p, keeping the RX stamp of what it read.
func (s *stamper) read(c *clientConn, p []byte) (int, error) {
	if !s.on {
		if s.tcp != nil {
			return s.tcp.Read(p)
		}
		return c.conn.Read(p)
	}
	var (
		n    int
		oobn int
		rerr error
	)
	err := s.rc.Read(func(fd uintptr) bool {
		n, oobn, rerr = s.recvmsg(int(fd), p, s.oob, 0)
		return rerr != unix.EAGAIN
	})
	if err != nil {
		return 0, err
	}
	if rerr != nil {
		return 0, rerr
	}
	if n == 0 {
		return 0, io.EOF
	}
	if t := rxStamp(s.oob[:oobn]); t != 0 {
		s.rx = t
	}
	return n, nil
}

// readTX drains the error queue until it finds the TX stamp of the current
// key (earlier keys are stale: skipped).
func (s *stamper) readTX() {
	_ = s.rc.Control(func(fd uintptr) {
		for {
			_, oobn, err := s.recvmsg(int(fd), nil, s.eoob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
			if err != nil {
				return // EAGAIN: not queued yet
			}
			if t, key, ok := txStamp(s.eoob[:oobn]); ok && key == s.key {
				s.tx = t
				return
			}
		}
	})
}

// recvmsg is recvmsg(2) without allocations.
func (s *stamper) recvmsg(fd int, p, oob []byte, flags int) (n, oobn int, err error) {
	s.msg = unix.Msghdr{}
	if len(p) > 0 {
		s.iov.Base = &p[0]
		s.iov.SetLen(len(p))
		s.msg.Iov = &s.iov
		s.msg.Iovlen = 1
	}
	if len(oob) > 0 {
		s.msg.Control = &oob[0]
		s.msg.SetControllen(len(oob))
	}
	r, _, e := unix.Syscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&s.msg)), uintptr(flags))
	if e != 0 {
		return 0, 0, e
	}
	return int(r), int(s.msg.Controllen), nil
}

// cmsgHdrLen is the size of struct cmsghdr on 64-bit Linux.
const cmsgHdrLen = unix.SizeofCmsghdr

// cmsgs calls f with each control message's level, type and data.
func cmsgs(oob []byte, f func(level, typ int32, data []byte)) {
	for len(oob) >= cmsgHdrLen {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < cmsgHdrLen || l > len(oob) {
			return
		}
		f(h.Level, h.Type, oob[cmsgHdrLen:l])
		oob = oob[min(cmsgAlign(l), len(oob)):]
	}
}

func cmsgAlign(n int) int { return (n + 7) &^ 7 }

// scmTimestamping returns the software stamp (the first of struct
// scm_timestamping's three timespecs) in Unix ns.
func scmTimestamping(d []byte) int64 {
	if len(d) < 16 {
		return 0
	}
	return int64(binary.NativeEndian.Uint64(d))*1e9 + int64(binary.NativeEndian.Uint64(d[8:]))
}

// rxStamp returns the RX stamp of a read's control messages, 0 if none.
func rxStamp(oob []byte) int64 {
	var t int64
	cmsgs(oob, func(level, typ int32, d []byte) {
		if level == unix.SOL_SOCKET && typ == unix.SO_TIMESTAMPING {
			t = scmTimestamping(d)
		}
	})
	return t
}

// txStamp returns the stamp and key of one error-queue message, ok when it
// is a TX software stamp.
func txStamp(oob []byte) (t int64, key uint32, ok bool) {
	var stamped, isTX bool
	cmsgs(oob, func(level, typ int32, d []byte) {
		switch {
		case level == unix.SOL_SOCKET && typ == unix.SO_TIMESTAMPING:
			t, stamped = scmTimestamping(d), true
		case level == unix.SOL_IP && typ == unix.IP_RECVERR, level == unix.SOL_IPV6 && typ == unix.IPV6_RECVERR:
			if len(d) >= int(unsafe.Sizeof(unix.SockExtendedErr{})) {
				e := (*unix.SockExtendedErr)(unsafe.Pointer(&d[0]))
				if e.Errno == uint32(unix.ENOMSG) && e.Origin == unix.SO_EE_ORIGIN_TIMESTAMPING && e.Info == unix.SCM_TSTAMP_SND {
					key, isTX = e.Data, true
				}
			}
		}
	})
	return t, key, stamped && isTX && t != 0
}
