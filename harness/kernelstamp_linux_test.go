package harness_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/stream"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/harness/testbed/netns"
	"github.com/meshbench/meshbench/harness/testbed/testutil"
	"github.com/meshbench/meshbench/internal/nsutil"
)

// TestKernelLatencyAgainstCapture checks the load client's kernel-side
// latency against an independent measurement of the same requests: a
// packet capture (AF_PACKET, the hook tcpdump uses, with its own kernel
// timestamps) on the client pod's interface, pairing each request's data
// segment with the response's. The two must agree within
// kernelTolerance.
func TestKernelLatencyAgainstCapture(t *testing.T) {
	testutil.Privileged(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := netns.New(netns.Options{}).Create(ctx, testbed.Spec{RunID: testutil.NewRunID(t), Nodes: 2,
		Pods: []testbed.PodSpec{{Name: "client", Node: 0}, {Name: "server", Node: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Destroy(context.Background()) })
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	client, server := c.Pod("client"), c.Pod("server")
	if _, err := c.Start(ctx, server, testbed.ProcessSpec{Name: "echo", Role: results.RoleServer,
		Args: []string{exe, "echo", "--listen", ":8080", "--admin", "127.0.0.1:15090"}}); err != nil {
		t.Fatal(err)
	}
	target := net.JoinHostPort(server.IP.String(), "8080")
	if err := waitTCP(ctx, client.NetnsPath, target); err != nil {
		t.Fatal(err)
	}

	capt, err := startCapture(client.NetnsPath, client.PodVeth)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	proc, err := c.Start(ctx, client, testbed.ProcessSpec{Name: "load", Role: results.RoleClient, Stdout: pw,
		Args: []string{exe, "load", "--target", target, "--rate", "500", "--duration", "3s", "--warmup", "0s", "--connections", "4"}})
	if err != nil {
		t.Fatal(err)
	}
	go func() { <-proc.Done(); pw.Close() }()
	sum, err := stream.ReadStream(pr, nil)
	if err != nil {
		t.Fatalf("load: %v (%v)", err, proc.Err())
	}
	pairs := capt.stop()
	if sum.KernelStamped == 0 || len(pairs) == 0 {
		t.Fatalf("kernel stamped %d requests, capture paired %d", sum.KernelStamped, len(pairs))
	}
	slices.Sort(pairs)
	pct := func(q float64) float64 {
		i := max(int(math.Ceil(q*float64(len(pairs))))-1, 0)
		return float64(pairs[min(i, len(pairs)-1)].Microseconds())
	}
	k := sum.KernelLatencyUS
	t.Logf("%d successes, %d kernel-stamped; capture paired %d requests. p50: client %.0f µs, kernel-side %.0f, capture %.0f; p99: client %.0f, kernel-side %.0f, capture %.0f",
		sum.Successes, sum.KernelStamped, len(pairs), sum.LatencyUS.P50, k.P50, pct(0.5), sum.LatencyUS.P99, k.P99, pct(0.99))
	if sum.KernelStamped != sum.Successes {
		t.Errorf("kernel stamped %d of %d successes", sum.KernelStamped, sum.Successes)
	}
	if d := math.Abs(float64(len(pairs)) - float64(sum.Successes)); d > float64(sum.Successes)/100+4 {
		t.Errorf("capture paired %d requests, client counted %d", len(pairs), sum.Successes)
	}
	// The two measure the same requests, but a request can be read
	// differently by both (a tap and a stamp a scheduling delay apart
	// on a busy 2-vCPU machine), so a quantile may move by the share of
	// such requests. The check allows rankSlack of them: the client's
	// value at q must lie within the capture's values at q±rankSlack,
	// widened by the clock-reading tolerance.
	const rankSlack = 0.005
	for _, q := range []struct {
		name     string
		q        float64
		kern     float64
		abs, rel float64
	}{
		{"p50", 0.50, k.P50, 10, 0.05},
		{"p90", 0.90, k.P90, 15, 0.10},
		{"p99", 0.99, k.P99, 25, 0.15},
	} {
		lo, hi := pct(q.q-rankSlack), pct(min(q.q+rankSlack, 1))
		lo -= kernelTolerance(lo, q.abs, q.rel)
		hi += kernelTolerance(hi, q.abs, q.rel)
		if q.kern < lo || q.kern > hi {
			t.Errorf("%s: kernel-side %.0f µs, outside the capture's p%g–p%g widened to %.0f–%.0f µs",
				q.name, q.kern, 100*(q.q-rankSlack), 100*min(q.q+rankSlack, 1), lo, hi)
		}
	}
}

// kernelTolerance is how far apart the client's kernel-side latency and a
// capture's may be at a percentile whose capture value is v µs: abs µs,
// or frac of v when larger. The two take different clock readings of the
// same packets a few µs apart (the capture taps a packet just before the
// device transmits it, and before IP delivers it), and the histograms
// round to 3 significant digits.
func kernelTolerance(v, abs, frac float64) float64 { return max(abs, frac*v) }

// waitTCP waits until addr accepts connections from the netns at path.
func waitTCP(ctx context.Context, path, addr string) error {
	for {
		c, err := nsutil.Dial(ctx, path, "tcp", addr)
		if err == nil {
			return c.Close()
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// capture reads TCP/IPv4 packets on one interface with kernel timestamps
// and pairs, per connection, each outgoing data segment with the next
// incoming one: a request and its response (64-byte bodies fit one
// segment each).
type capture struct {
	fd    int
	done  chan struct{}
	mu    sync.Mutex
	pairs []time.Duration
}

func startCapture(netnsPath, iface string) (*capture, error) {
	c := &capture{done: make(chan struct{})}
	err := nsutil.Do(netnsPath, func() error {
		// ETH_P_ALL: a socket bound to one protocol sees only what
		// arrives, not what leaves.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		c.fd = fd
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
			return err
		}
		tv := unix.Timeval{Usec: 100_000}
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		if c.fd > 0 {
			unix.Close(c.fd)
		}
		return nil, err
	}
	go c.run()
	return c, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (c *capture) run() {
	buf, oob := make([]byte, 2048), make([]byte, 128)
	waiting := map[uint16]int64{} // client port → time of its request's data segment
	for {
		select {
		case <-c.done:
			return
		default:
		}
		n, oobn, _, from, err := unix.Recvmsg(c.fd, buf, oob, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		ll, ok := from.(*unix.SockaddrLinklayer)
		if !ok {
			continue
		}
		ts := packetTime(oob[:oobn])
		sport, dport, payload, ok := tcpOf(buf[:n])
		if !ok || payload == 0 || ts == 0 {
			continue
		}
		switch ll.Pkttype {
		case unix.PACKET_OUTGOING:
			waiting[sport] = ts
		case unix.PACKET_HOST:
			if t0, ok := waiting[dport]; ok {
				delete(waiting, dport)
				c.mu.Lock()
				c.pairs = append(c.pairs, time.Duration(ts-t0))
				c.mu.Unlock()
			}
		}
	}
}

// stop ends the capture and returns the request/response pairs' latencies.
func (c *capture) stop() []time.Duration {
	close(c.done)
	time.Sleep(200 * time.Millisecond) // one receive timeout
	unix.Close(c.fd)
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.pairs)
}

// packetTime returns the SCM_TIMESTAMPNS of a packet, in Unix ns.
func packetTime(oob []byte) int64 {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= int(unsafe.Sizeof(unix.Timespec{})) {
			ts := (*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
			return ts.Nano()
		}
	}
	return 0
}

// tcpOf parses an Ethernet frame carrying TCP over IPv4: its ports and
// payload length.
func tcpOf(b []byte) (sport, dport uint16, payload int, ok bool) {
	const eth = 14
	if len(b) < eth+20 || binary.BigEndian.Uint16(b[12:14]) != unix.ETH_P_IP {
		return 0, 0, 0, false
	}
	ip := b[eth:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[9] != unix.IPPROTO_TCP || len(ip) < ihl+20 {
		return 0, 0, 0, false
	}
	total := int(binary.BigEndian.Uint16(ip[2:4]))
	tcp := ip[ihl:]
	doff := int(tcp[12]>>4) * 4
	return binary.BigEndian.Uint16(tcp[0:2]), binary.BigEndian.Uint16(tcp[2:4]), total - ihl - doff, true
}
