package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

func (p *Builtin) proxyTCP(ctx context.Context, dc net.Conn, dst netip.AddrPort, dir corev3.TrafficDirection, ls *Counters, tc *tcpCfg) {
	cl := p.cluster(tc.cluster)
	if cl == nil {
		ls.NoRoute.Add(1)
		return
	}
	cs := cl.stats
	cfg := cl.cfg.Load()
	var addr netip.AddrPort
	var h *host
	if cfg.originalDst {
		addr = upstreamOf(dst, dir, p.opts.InboundOriginalIP)
		h = cl.dynamicHost(addr)
	} else {
		var key []byte
		if tc.hashSourceIP {
			if ta, ok := dc.RemoteAddr().(*net.TCPAddr); ok {
				key = ta.IP.To4()
			}
		}
		h = cl.picker.Load().pick(key, key != nil)
		if h == nil {
			cs.CxConnectFail.Add(1)
			return
		}
		h.active.Add(1)
		defer h.active.Add(-1)
		addr = h.addr
	}
	if !cl.acquireConn() {
		cs.OverflowCx.Add(1)
		return
	}
	defer cl.releaseConn()
	uc, err := cl.dial(ctx, addr)
	if err != nil {
		p.log.Debug("tcp upstream", "cluster", cl.name, "addr", addr, "err", err)
		return
	}
	defer cs.CxActive.Add(-1)
	defer uc.Close()
	h.stats.CxTotal.Add(1)
	uc = &countingConn{Conn: uc, in: &h.stats.BytesIn, out: &h.stats.BytesOut}
	pipe(dc, uc, &ls.BytesIn, &ls.BytesOut, &cs.BytesOut, &cs.BytesIn)
}

// pipe copies a↔b until both directions end, half-closing each side when
// its source ends. It copies with plain read/write loops, never splice.
func pipe(a, b net.Conn, aIn, aOut, bOut, bIn *atomic.Int64) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); copyLoop(b, a, aIn, bOut) }()
	go func() { defer wg.Done(); copyLoop(a, b, bIn, aOut) }()
	wg.Wait()
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyLoop reads src and writes dst until src ends, then half-closes dst;
// on an error it closes both.
func copyLoop(dst, src net.Conn, read, written *atomic.Int64) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		n, err := src.Read(buf)
		if n > 0 {
			read.Add(int64(n))
			w, werr := writeAll(dst, buf[:n])
			written.Add(int64(w))
			if werr != nil {
				src.Close()
				dst.Close()
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				if cw, ok := dst.(interface{ CloseWrite() error }); ok {
					_ = cw.CloseWrite()
					return
				}
			}
			src.Close()
			dst.Close()
			return
		}
	}
}

func writeAll(w io.Writer, b []byte) (int, error) {
	total := 0
	for total < len(b) {
		n, err := w.Write(b[total:])
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}
