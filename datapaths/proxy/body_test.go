package proxy

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestClassOf(t *testing.T) {
	for _, c := range []struct{ n, class int }{
		{0, 0}, {1, 0}, {4 << 10, 0}, {4<<10 + 1, 1}, {16 << 10, 1}, {16<<10 + 1, 2},
		{32 << 10, 2}, {64 << 10, 2}, {256 << 10, 3}, {1 << 20, 4}, {1<<20 + 1, -1},
	} {
		if got := classOf(c.n); got != c.class {
			t.Errorf("classOf(%d) = %d, want %d", c.n, got, c.class)
		}
		if c.class >= 0 {
			if bb := getBuf(c.n); cap(bb.b) < c.n || len(bb.b) != 0 {
				t.Errorf("getBuf(%d): len %d cap %d", c.n, len(bb.b), cap(bb.b))
			}
		}
	}
}

func TestReadBody(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 2048+3) // 32 KiB + 48 B
	for _, c := range []struct {
		name  string
		r     io.Reader
		n     int64
		limit int64
		want  []byte
		err   error
	}{
		{"empty, length known", bytes.NewReader(nil), 0, 100, nil, nil},
		{"empty, to EOF", bytes.NewReader(nil), -1, 100, nil, nil},
		{"length known", bytes.NewReader(body), int64(len(body)), 1 << 20, body, nil},
		{"to EOF, in small reads", iotest.OneByteReader(bytes.NewReader(body[:9000])), -1, 1 << 20, body[:9000], nil},
		{"to EOF, one read short of a class", iotest.HalfReader(bytes.NewReader(body)), -1, 1 << 20, body, nil},
		{"length over the limit", bytes.NewReader(body), int64(len(body)), 1000, nil, errBodyTooLarge},
		{"to EOF, over the limit", bytes.NewReader(body), -1, 1000, nil, errBodyTooLarge},
		{"to EOF, at the limit", bytes.NewReader(body[:5000]), -1, 5000, body[:5000], nil},
		{"shorter than its length", bytes.NewReader(body[:10]), 20, 100, nil, io.ErrUnexpectedEOF},
	} {
		t.Run(c.name, func(t *testing.T) {
			bb, err := readBody(c.r, c.n, c.limit)
			if !errors.Is(err, c.err) {
				t.Fatalf("err %v, want %v", err, c.err)
			}
			if !bytes.Equal(bb.bytes(), c.want) {
				t.Fatalf("read %d bytes, want %d", len(bb.bytes()), len(c.want))
			}
			if len(c.want) == 0 && bb != nil {
				t.Errorf("an empty body has a buffer")
			}
			bb.release()
		})
	}
}

// TestBufBody checks that a response body from the pool reads its bytes
// and goes back on Close, and that a buffer comes back from the pool
// emptied.
func TestBufBody(t *testing.T) {
	bb, err := readBody(bytes.NewReader([]byte("hello")), 5, 100)
	if err != nil {
		t.Fatal(err)
	}
	rb := newBufBody(bb)
	got, _ := io.ReadAll(rb)
	if string(got) != "hello" {
		t.Fatalf("read %q", got)
	}
	if err := rb.Close(); err != nil || rb.buf != nil || rb.Len() != 0 {
		t.Fatalf("close: %v, buffer kept %v, %d unread", err, rb.buf != nil, rb.Len())
	}
	if again := getBuf(5); len(again.b) != 0 {
		t.Fatalf("a pooled buffer comes back with %d bytes", len(again.b))
	}
}
