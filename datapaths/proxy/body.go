package proxy

import (
	"bytes"
	"errors"
	"io"
	"math/bits"
	"sync"
)

// The HTTP proxy buffers every request and response body (so that a
// request can be retried), and reads them into pooled buffers: read with
// io.ReadAll, a 32 KiB body allocated about four times its size as the
// slice grew, twice per hop, and the garbage collector ran every few tens
// of milliseconds under load (PERFORMANCE.md).

// Buffer size classes: 4 KiB, 16 KiB, … 1 MiB, each four times the last.
// A body larger than the largest class gets a buffer of its own, which is
// not kept.
const (
	minClassShift = 12
	numClasses    = 5
)

var bodyPools [numClasses]sync.Pool // of *bodyBuf

// bodyBuf is a buffer from the pool; b is the body read into it.
type bodyBuf struct {
	b     []byte
	class int // -1: not pooled
}

// classOf returns the size class of a buffer of n bytes, or -1 when n is
// larger than the largest class.
func classOf(n int) int {
	if n <= 1<<minClassShift {
		return 0
	}
	c := (bits.Len(uint(n-1)) - minClassShift + 1) / 2
	if c >= numClasses {
		return -1
	}
	return c
}

// getBuf returns an empty buffer of capacity at least n.
func getBuf(n int) *bodyBuf {
	c := classOf(n)
	if c < 0 {
		return &bodyBuf{b: make([]byte, 0, n), class: -1}
	}
	if v := bodyPools[c].Get(); v != nil {
		bb := v.(*bodyBuf)
		bb.b = bb.b[:0]
		return bb
	}
	return &bodyBuf{b: make([]byte, 0, 1<<(minClassShift+2*c)), class: c}
}

// release returns bb to its pool; nothing may use it afterwards. A nil bb
// (an empty body) is fine.
func (bb *bodyBuf) release() {
	if bb == nil || bb.class < 0 {
		return
	}
	bb.b = bb.b[:0]
	bodyPools[bb.class].Put(bb)
}

// bytes returns the body; nil for a nil bb.
func (bb *bodyBuf) bytes() []byte {
	if bb == nil {
		return nil
	}
	return bb.b
}

// errBodyTooLarge is returned by readBody for a body over its limit.
var errBodyTooLarge = errors.New("body too large")

// readBody reads a body of length n (-1: unknown, read to EOF) into a
// pooled buffer; nil for an empty body. A body of more than limit bytes
// is errBodyTooLarge, and nothing of it is kept.
func readBody(r io.Reader, n, limit int64) (*bodyBuf, error) {
	switch {
	case n == 0:
		return nil, nil
	case n > limit:
		return nil, errBodyTooLarge
	case n > 0:
		bb := getBuf(int(n))
		bb.b = bb.b[:n]
		if _, err := io.ReadFull(r, bb.b); err != nil {
			bb.release()
			return nil, err
		}
		return bb, nil
	}
	bb := getBuf(1 << minClassShift)
	for {
		if len(bb.b) == cap(bb.b) {
			if int64(len(bb.b)) > limit {
				bb.release()
				return nil, errBodyTooLarge
			}
			next := getBuf(2 * cap(bb.b))
			next.b = append(next.b, bb.b...)
			bb.release()
			bb = next
		}
		m, err := r.Read(bb.b[len(bb.b):cap(bb.b)])
		bb.b = bb.b[:len(bb.b)+m]
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			bb.release()
			return nil, err
		}
	}
	if int64(len(bb.b)) > limit {
		bb.release()
		return nil, errBodyTooLarge
	}
	if len(bb.b) == 0 {
		bb.release()
		return nil, nil
	}
	return bb, nil
}

// bufBody is a response body served from a pooled buffer, which goes
// back to its pool when the body is closed (http.Response.Write closes
// it once written).
type bufBody struct {
	bytes.Reader
	buf *bodyBuf
}

func newBufBody(bb *bodyBuf) *bufBody {
	b := &bufBody{buf: bb}
	b.Reset(bb.bytes())
	return b
}

func (b *bufBody) Close() error {
	b.Reset(nil)
	b.buf.release()
	b.buf = nil
	return nil
}
