package workload

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The load client's request path.
//
// vegeta paces the load and times each request; the transport below is
// what it calls for each one. It writes and reads on the very goroutine
// that vegeta times the request on (net/http's Transport hands each request
// to a per-connection write goroutine and gets the response back from a
// read goroutine: two more goroutine wake-ups per request), over exactly
// the configured number of persistent connections (a request waits for a
// free one, and that wait is part of its latency), with each target's
// request serialised once and answered bodies read into a per-connection
// buffer and discarded. Where the kernel allows, it asks the kernel to
// timestamp each request's last byte as it leaves and each response's last
// segment as it arrives (SO_TIMESTAMPING), which gives the kernel-side
// latency: what the datapath delivered, without the client's own cost.

// Transport errors.
var (
	errMalformed = errors.New("malformed HTTP response")
	errTooLarge  = errors.New("response header too large")
)

// readBufSize is each connection's read buffer: the response header must fit.
const readBufSize = 32 << 10

// seqHeader is the request header in which vegeta numbers requests.
const seqHeader = "X-Vegeta-Seq"

// transport is an http.RoundTripper over a fixed pool of connections per
// target.
type transport struct {
	pools   map[string]*pool // by "host:port"
	timeout time.Duration
	// stamps asks the kernel for timestamps on every connection.
	stamps bool
	// timings holds each request's timings by sequence number.
	timings *seqLog
	dialer  *abortDialer
}

// pool holds the connections of one target: free ones, and empty slots
// (nil) for connections still to be dialled. A request takes one from free
// (waiting while every connection is busy) and gives it back.
type pool struct {
	addr      string
	request   []byte // the serialised request
	keepAlive bool
	free      chan *clientConn
}

// newTransport returns a transport over o's targets: o.Connections
// connections in all, spread over the targets (at least one each).
func newTransport(o ClientOptions, d *abortDialer, timings *seqLog) *transport {
	t := &transport{pools: map[string]*pool{}, timeout: o.Timeout, stamps: o.KernelStamps, timings: timings, dialer: d}
	n := len(o.Targets)
	for i, addr := range o.Targets {
		if _, dup := t.pools[addr]; dup {
			continue
		}
		conns := max(1, o.Connections/n)
		if i < o.Connections%n {
			conns++
		}
		p := &pool{addr: addr, request: buildRequest(addr, o.Path, o.RequestSize, o.KeepAlive), keepAlive: o.KeepAlive,
			free: make(chan *clientConn, conns)}
		for range conns {
			p.free <- nil
		}
		t.pools[addr] = p
	}
	return t
}

// buildRequest serialises the request sent to addr: a GET, or a POST with
// size bytes of body.
func buildRequest(addr, path string, size int, keepAlive bool) []byte {
	var b bytes.Buffer
	method := http.MethodGet
	if size > 0 {
		method = http.MethodPost
	}
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: meshbench\r\n", method, path, addr)
	if !keepAlive {
		b.WriteString("Connection: close\r\n")
	}
	if size > 0 {
		fmt.Fprintf(&b, "Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", size)
		for i := range size {
			b.WriteByte('a' + byte(i%26))
		}
	} else {
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// RoundTrip implements http.RoundTripper: it sends the target's request on
// a connection of the target's pool and reads the whole response. The
// returned response has no body: the body was read and discarded.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	p := t.pools[req.URL.Host]
	if p == nil {
		return nil, fmt.Errorf("load client: no connections to %s", req.URL.Host)
	}
	ctx := req.Context()
	deadline := time.Now().Add(t.timeout)
	c, err := p.get(ctx, deadline)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		if c == nil {
			if c, err = t.dial(ctx, p.addr, deadline); err != nil {
				p.put(nil)
				return nil, err
			}
		}
		reused := c.requests > 0
		code, tm, n, err := c.roundTrip(p.request, deadline)
		if err == nil {
			if !p.keepAlive || c.closing {
				c.close()
				c = nil
			}
			p.put(c)
			if seq, perr := strconv.ParseUint(req.Header.Get(seqHeader), 10, 64); perr == nil {
				t.timings.set(seq, tm)
			}
			return response(req, code), nil
		}
		c.close()
		c = nil
		// A kept-alive connection the server had closed before this
		// request (nothing came back): once more on a new one, as
		// net/http does.
		if reused && n == 0 && attempt == 0 && !errors.Is(err, errDeadline) {
			continue
		}
		p.put(nil)
		return nil, err
	}
}

var errDeadline = errors.New("deadline")

// dial opens a connection to addr and, when asked, turns on the kernel's
// timestamps on it.
func (t *transport) dial(ctx context.Context, addr string, deadline time.Time) (*clientConn, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	nc, err := t.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &clientConn{conn: nc, d: t.dialer, buf: make([]byte, readBufSize)}
	if err := c.init(t.stamps); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// response is what vegeta gets back: the status and an empty body.
func response(req *http.Request, code int) *http.Response {
	return &http.Response{
		StatusCode: code, Status: statusText(code), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Body: http.NoBody, ContentLength: 0, Request: req,
	}
}

// statusText returns "200 OK"; vegeta uses it as the error of a non-2xx.
func statusText(code int) string {
	if code == http.StatusOK {
		return "200 OK"
	}
	return strconv.Itoa(code) + " " + http.StatusText(code)
}

// get takes a connection (nil: an empty slot, to dial) from the pool,
// waiting while all are busy, until ctx ends or deadline passes.
func (p *pool) get(ctx context.Context, deadline time.Time) (*clientConn, error) {
	select {
	case c := <-p.free:
		return c, nil
	default:
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case c := <-p.free:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-timer.C:
		return nil, fmt.Errorf("wait for a free connection to %s: %w", p.addr, errDeadlineExceeded)
	}
}

// errDeadlineExceeded reads as a timeout to the error classes.
var errDeadlineExceeded = fmt.Errorf("%w (%w)", errDeadline, context.DeadlineExceeded)

// put gives a connection (or an empty slot) back.
func (p *pool) put(c *clientConn) { p.free <- c }

// clientConn is one connection of the pool, used by one request at a time.
type clientConn struct {
	conn net.Conn
	d    *abortDialer
	buf  []byte
	r, w int // unread bytes are buf[r:w]
	// requests counts the requests answered on the connection.
	requests int
	// closing is set when the server said it closes the connection.
	closing bool
	// ts is the kernel timestamping state (Linux).
	ts stamper
}

// roundTrip writes request and reads one response. It returns the status,
// the request's timings, and how many response bytes were read.
func (c *clientConn) roundTrip(request []byte, deadline time.Time) (code int, tm timings, n int, err error) {
	if err := c.conn.SetDeadline(deadline); err != nil {
		return 0, tm, 0, err
	}
	tm.write = time.Now().UnixNano()
	if _, err := c.conn.Write(request); err != nil {
		return 0, tm, 0, err
	}
	c.d.sent.Add(int64(len(request)))
	c.ts.sent(c, len(request))
	before := c.d.received.Load()
	code, err = c.readResponse()
	tm.read = time.Now().UnixNano()
	n = int(c.d.received.Load() - before)
	if err != nil {
		if errors.Is(err, io.EOF) && n > 0 {
			err = io.ErrUnexpectedEOF
		}
		return 0, tm, n, err
	}
	c.requests++
	tm.tx, tm.rx = c.ts.stamps(c)
	return code, tm, n, nil
}

// fill reads more bytes into the buffer, compacting it first when full.
func (c *clientConn) fill() error {
	if c.w == len(c.buf) {
		if c.r == 0 {
			return errTooLarge
		}
		c.w = copy(c.buf, c.buf[c.r:c.w])
		c.r = 0
	}
	m, err := c.ts.read(c, c.buf[c.w:])
	c.w += m
	c.d.received.Add(int64(m))
	if m > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// readResponse reads one response and discards its body.
func (c *clientConn) readResponse() (int, error) {
	c.ts.reset()
	// The header.
	var end int
	for {
		if i := bytes.Index(c.buf[c.r:c.w], crlfcrlf); i >= 0 {
			end = c.r + i + len(crlfcrlf)
			break
		}
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	h := c.buf[c.r:end]
	c.r = end
	code, length, chunked, closing, err := parseHeader(h)
	if err != nil {
		return 0, err
	}
	c.closing = closing
	switch {
	case code/100 == 1 && code != http.StatusSwitchingProtocols:
		return c.readResponse() // 100 Continue and the like
	case code == http.StatusNoContent || code == http.StatusNotModified:
		return code, nil
	case chunked:
		return code, c.skipChunked()
	case length >= 0:
		return code, c.skip(length)
	}
	// No length: the body runs to the end of the connection.
	c.closing = true
	for {
		c.r = c.w
		if err := c.fill(); err != nil {
			if errors.Is(err, io.EOF) {
				return code, nil
			}
			return 0, err
		}
	}
}

var crlfcrlf = []byte("\r\n\r\n")

// skip discards n body bytes.
func (c *clientConn) skip(n int64) error {
	for {
		avail := int64(c.w - c.r)
		if avail >= n {
			c.r += int(n)
			return nil
		}
		n -= avail
		c.r, c.w = 0, 0
		if err := c.fill(); err != nil {
			return err
		}
	}
}

// line returns the next CRLF-terminated line, without its CRLF.
func (c *clientConn) line() ([]byte, error) {
	for {
		if i := bytes.Index(c.buf[c.r:c.w], crlfcrlf[:2]); i >= 0 {
			l := c.buf[c.r : c.r+i]
			c.r += i + 2
			return l, nil
		}
		if err := c.fill(); err != nil {
			return nil, err
		}
	}
}

// skipChunked discards a chunked body, trailers included.
func (c *clientConn) skipChunked() error {
	for {
		l, err := c.line()
		if err != nil {
			return err
		}
		if i := bytes.IndexByte(l, ';'); i >= 0 {
			l = l[:i]
		}
		size, err := strconv.ParseInt(strings.TrimSpace(string(l)), 16, 64)
		if err != nil || size < 0 {
			return errMalformed
		}
		if size == 0 {
			for { // trailers, up to an empty line
				l, err := c.line()
				if err != nil {
					return err
				}
				if len(l) == 0 {
					return nil
				}
			}
		}
		if err := c.skip(size + 2); err != nil {
			return err
		}
	}
}

// parseHeader parses a response header: its status code, Content-Length
// (-1 if absent), whether the body is chunked and whether the server
// closes the connection.
func parseHeader(h []byte) (code int, length int64, chunked, closing bool, err error) {
	length = -1
	status, rest, _ := bytes.Cut(h, crlfcrlf[:2])
	if len(status) < 12 || !bytes.HasPrefix(status, []byte("HTTP/1.")) || status[8] != ' ' {
		return 0, 0, false, false, errMalformed
	}
	code, err = strconv.Atoi(string(status[9:12]))
	if err != nil || code < 100 {
		return 0, 0, false, false, errMalformed
	}
	closing = status[7] == '0' // HTTP/1.0 closes unless told otherwise
	for len(rest) > 0 {
		var l []byte
		l, rest, _ = bytes.Cut(rest, crlfcrlf[:2])
		name, value, ok := bytes.Cut(l, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.ParseInt(string(value), 10, 64); err != nil || length < 0 {
				return 0, 0, false, false, errMalformed
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.Contains(bytes.ToLower(value), []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			v := bytes.ToLower(value)
			closing = bytes.Contains(v, []byte("close")) || closing && !bytes.Contains(v, []byte("keep-alive"))
		}
	}
	return code, length, chunked, closing, nil
}

func (c *clientConn) close() {
	c.conn.Close()
}

// timings are the clock readings of one request on its connection, Unix
// ns (0: not taken): before the request was written, when the kernel
// stamped its last byte leaving (tx) and the response's last segment
// arriving (rx), and after the response was read.
type timings struct {
	write, tx, rx, read int64
}

// kernel returns the kernel-side latency, 0 without both stamps.
func (t timings) kernel() time.Duration {
	if t.tx == 0 || t.rx == 0 || t.rx < t.tx {
		return 0
	}
	return time.Duration(t.rx - t.tx)
}

// seqLog holds each request's timings by sequence number. The request's
// goroutine writes them before vegeta sends its result down the results
// channel, and the recorder reads them after receiving it: the channel
// orders the two.
type seqLog struct {
	mu   sync.Mutex
	t    []timings
	more map[uint64]timings // beyond t's length
}

func newSeqLog(n int) *seqLog { return &seqLog{t: make([]timings, n)} }

func (l *seqLog) set(seq uint64, t timings) {
	if l == nil {
		return
	}
	if seq < uint64(len(l.t)) {
		l.t[seq] = t
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.more == nil {
		l.more = map[uint64]timings{}
	}
	l.more[seq] = t
}

// get returns the timings of seq (zero if none).
func (l *seqLog) get(seq uint64) timings {
	if l == nil {
		return timings{}
	}
	if seq < uint64(len(l.t)) {
		return l.t[seq]
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.more[seq]
}
