package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// maxBody bounds the request and response bodies the HTTP proxy buffers
// (bodies are buffered so that requests can be retried).
const maxBody = 64 << 20

// countingConn counts the bytes read and written on a connection, into
// in and out and, when set, into hin and hout as well (an endpoint's).
type countingConn struct {
	net.Conn
	in, out   *atomic.Int64
	hin, hout *atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.in.Add(int64(n))
	if c.hin != nil {
		c.hin.Add(int64(n))
	}
	return n, err
}

// CloseWrite half-closes the connection when the underlying one can.
func (c *countingConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.out.Add(int64(n))
	if c.hout != nil {
		c.hout.Add(int64(n))
	}
	return n, err
}

func (p *Builtin) proxyHTTP(ctx context.Context, dc net.Conn, dst netip.AddrPort, dir corev3.TrafficDirection, ls *Counters, hc *httpCfg) {
	cc := &countingConn{Conn: dc, in: &ls.BytesIn, out: &ls.BytesOut}
	br := bufio.NewReaderSize(cc, 16<<10)
	bw := bufio.NewWriterSize(cc, 16<<10)
	var src netip.Addr
	if ta, ok := dc.RemoteAddr().(*net.TCPAddr); ok {
		src, _ = netip.AddrFromSlice(ta.IP)
		src = src.Unmap()
	}
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.ErrUnexpectedEOF) {
				var ne net.Error
				if !errors.As(err, &ne) {
					ls.RqTotal.Add(1)
					ls.status(http.StatusBadRequest)
					_ = localReply(http.StatusBadRequest, "malformed request", nil, true).Write(bw)
					_ = bw.Flush()
				}
			}
			return
		}
		ls.RqTotal.Add(1)
		if strings.EqualFold(req.Header.Get("Expect"), "100-continue") {
			_, _ = bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			if err := bw.Flush(); err != nil {
				return
			}
		}
		body, err := readBody(req.Body, req.ContentLength, maxBody)
		req.Body.Close()
		var resp *http.Response
		switch {
		case errors.Is(err, errBodyTooLarge):
			resp = localReply(http.StatusRequestEntityTooLarge, "request body too large", req, true)
		case err != nil:
			return
		default:
			resp = p.routeHTTP(ctx, req, body.bytes(), src, dst, dir, hc, ls)
		}
		ls.status(resp.StatusCode)
		resp.Close = resp.Close || req.Close
		err = resp.Write(bw) // closes resp.Body: a pooled one goes back
		body.release()
		if err != nil {
			return
		}
		if err := bw.Flush(); err != nil {
			return
		}
		if resp.Close {
			return
		}
	}
}

// localReply is a response the proxy makes itself.
func localReply(code int, msg string, req *http.Request, closeConn bool) *http.Response {
	h := http.Header{}
	h.Set("Content-Type", "text/plain")
	h.Set("Server", "meshbench-proxy")
	return &http.Response{
		StatusCode: code, Status: fmt.Sprintf("%d %s", code, http.StatusText(code)),
		ProtoMajor: 1, ProtoMinor: 1, Header: h,
		ContentLength: int64(len(msg)), Body: io.NopCloser(strings.NewReader(msg)),
		Request: req, Close: closeConn,
	}
}

func (p *Builtin) routeHTTP(ctx context.Context, req *http.Request, body []byte, src netip.Addr, dst netip.AddrPort, dir corev3.TrafficDirection, hc *httpCfg, ls *Counters) *http.Response {
	rc := hc.inline
	if rc == nil {
		rc = p.state.Load().routes[hc.rds]
	}
	var re *routeEntry
	if rc != nil {
		if vh := rc.vhost(req.Host); vh != nil {
			re = vh.route(req.URL.Path)
		}
	}
	if re == nil {
		ls.NoRoute.Add(1)
		return localReply(http.StatusNotFound, "no route", req, false)
	}
	cl := p.cluster(re.cluster)
	if cl == nil {
		return localReply(http.StatusServiceUnavailable, "no cluster "+re.cluster, req, false)
	}
	return p.forward(ctx, cl, re, req, body, src, dst, dir)
}

// failure kinds of a try.
type failKind int

const (
	okKind failKind = iota
	connectFail
	resetFail
	timeoutFail
	overflowFail
	noHostFail
)

func (p *Builtin) forward(ctx context.Context, cl *cluster, re *routeEntry, req *http.Request, body []byte, src netip.Addr, dst netip.AddrPort, dir corev3.TrafficDirection) *http.Response {
	cs := cl.stats
	cfg := cl.cfg.Load()
	if cl.requests.Add(1) > cfg.maxRequests {
		cl.requests.Add(-1)
		cs.OverflowRq.Add(1)
		return overflowReply(req)
	}
	defer cl.requests.Add(-1)
	if re.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, re.timeout)
		defer cancel()
	}
	var key []byte
	hasKey := false
	if re.hash != nil {
		if re.hash.header != "" {
			if v := req.Header.Get(re.hash.header); v != "" {
				key, hasKey = []byte(v), true
			}
		} else if src.IsValid() {
			key, hasKey = src.AsSlice(), true
		}
	}
	tries := 1
	if re.retry != nil {
		tries += re.retry.numRetries
	}
	var resp *http.Response
	kind := okKind
	for try := 0; try < tries; try++ {
		if try > 0 {
			if cl.retries.Add(1) > cfg.maxRetries {
				cl.retries.Add(-1)
				cs.OverflowRetry.Add(1)
				break
			}
			cs.RqRetry.Add(1)
		}
		var h *host
		if cfg.originalDst {
			h = cl.dynamicHost(upstreamOf(dst, dir, p.opts.InboundOriginalIP))
		} else {
			h = cl.picker.Load().pick(key, hasKey)
		}
		if h == nil {
			resp, kind = nil, noHostFail
		} else {
			var perTry time.Duration
			if re.retry != nil {
				perTry = re.retry.perTryTimeout
			}
			resp, kind = p.try(ctx, cl, h, req, body, perTry)
		}
		if try > 0 {
			cl.retries.Add(-1)
		}
		if !retriable(re.retry, kind, resp) || ctx.Err() != nil || try+1 >= tries {
			break
		}
	}
	switch kind {
	case okKind:
		return resp
	case overflowFail:
		return overflowReply(req)
	case timeoutFail:
		return localReply(http.StatusGatewayTimeout, "upstream request timeout", req, false)
	case noHostFail:
		return localReply(http.StatusServiceUnavailable, "no healthy upstream", req, false)
	default:
		return localReply(http.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers", req, false)
	}
}

func overflowReply(req *http.Request) *http.Response {
	r := localReply(http.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers. reset reason: overflow", req, false)
	r.Header.Set("X-Envoy-Overflow", "true")
	return r
}

func upstreamOf(dst netip.AddrPort, dir corev3.TrafficDirection, originalIP bool) netip.AddrPort {
	if dir == corev3.TrafficDirection_INBOUND && !originalIP {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), dst.Port())
	}
	return dst
}

func retriable(rt *retryCfg, kind failKind, resp *http.Response) bool {
	if rt == nil {
		return false
	}
	switch kind {
	case connectFail:
		return rt.onConnect || rt.on5xx || rt.onGateway
	case resetFail:
		return rt.onReset || rt.on5xx || rt.onGateway
	case timeoutFail:
		return rt.on5xx || rt.onGateway || rt.onReset
	case okKind:
		c := resp.StatusCode
		return rt.on5xx && c >= 500 || rt.onGateway && c >= 502 && c <= 504
	}
	return false
}

var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Upgrade", "Transfer-Encoding", "Expect"}

// try sends one request to h and reads its whole response.
func (p *Builtin) try(ctx context.Context, cl *cluster, h *host, req *http.Request, body []byte, perTry time.Duration) (*http.Response, failKind) {
	cs := cl.stats
	if perTry > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, perTry)
		defer cancel()
	}
	h.active.Add(1)
	defer h.active.Add(-1)
	cs.RqTotal.Add(1)
	h.stats.RqTotal.Add(1)
	answered := false
	defer func() {
		if !answered {
			h.stats.RqError.Add(1)
		}
	}()
	// The downstream request's headers go upstream as they are, less the
	// hop-by-hop ones: nothing reads them after this.
	for _, k := range hopHeaders {
		req.Header.Del(k)
	}
	out := &http.Request{
		Method: req.Method, URL: req.URL, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: req.Header, Host: req.Host, ContentLength: int64(len(body)), Body: http.NoBody,
	}
	for fresh := 0; fresh < 2; fresh++ {
		uc, err := cl.get(ctx, h)
		if err != nil {
			switch {
			case errors.Is(err, errOverflowPending):
				return nil, overflowFail
			case errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil:
				cs.RqTimeout.Add(1)
				return nil, timeoutFail
			default:
				cs.status(http.StatusServiceUnavailable)
				return nil, connectFail
			}
		}
		if len(body) > 0 {
			out.Body = io.NopCloser(bytes.NewReader(body))
		}
		if d, ok := ctx.Deadline(); ok {
			_ = uc.conn.SetDeadline(d)
		}
		stop := context.AfterFunc(ctx, func() { _ = uc.conn.SetDeadline(time.Now()) })
		resp, rbody, n, err := roundTrip(uc, out)
		stop()
		if err != nil {
			cl.put(uc, false)
			if uc.reused && n == 0 && ctx.Err() == nil {
				continue // a stale keep-alive connection: once more on a new one
			}
			var ne net.Error
			if ctx.Err() != nil || errors.As(err, &ne) && ne.Timeout() {
				cs.RqTimeout.Add(1)
				return nil, timeoutFail
			}
			cs.status(http.StatusServiceUnavailable)
			return nil, resetFail
		}
		_ = uc.conn.SetDeadline(time.Time{})
		cl.put(uc, !resp.Close)
		cs.status(resp.StatusCode)
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			h.stats.Rq2xx.Add(1)
			answered = true
		}
		for _, k := range hopHeaders {
			resp.Header.Del(k)
		}
		resp.TransferEncoding = nil
		resp.Close = false
		resp.ContentLength = int64(len(rbody.bytes()))
		resp.Body = http.NoBody
		if rbody != nil {
			resp.Body = newBufBody(rbody)
		}
		resp.Request = req
		if req.Method == http.MethodHead {
			resp.ContentLength = -1
			if v := resp.Header.Get("Content-Length"); v != "" {
				resp.ContentLength, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		return resp, okKind
	}
	cs.status(http.StatusServiceUnavailable)
	return nil, resetFail
}

// countReader counts bytes read, to tell a stale connection (nothing
// read) from a reset mid-response.
type countReader struct {
	r io.Reader
	n int
}

func (c *countReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += n
	return n, err
}

func roundTrip(uc *upConn, out *http.Request) (*http.Response, *bodyBuf, int, error) {
	if err := out.Write(uc.bw); err != nil {
		return nil, nil, 0, err
	}
	if err := uc.bw.Flush(); err != nil {
		return nil, nil, 0, err
	}
	cr := &countReader{r: uc.br}
	// Peek so that a connection the server closed reads as zero bytes.
	if _, err := uc.br.Peek(1); err != nil {
		return nil, nil, 0, err
	}
	cr.n = 1
	resp, err := http.ReadResponse(uc.br, out)
	if err != nil {
		return nil, nil, cr.n, err
	}
	n := resp.ContentLength
	if resp.Body == http.NoBody { // HEAD, 204, 304
		n = 0
	}
	b, err := readBody(resp.Body, n, maxBody)
	resp.Body.Close()
	if err != nil {
		return nil, nil, cr.n, err
	}
	return resp, b, cr.n, nil
}
