package afxdp_test

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/datapaths/afxdp"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/internal/nsutil"
)

// blastDuration bounds the UDP blast.
const blastDuration = 2 * time.Second

// cpuTicks returns the user and system clock ticks pid has used.
func cpuTicks(t *testing.T, pid int) (user, sys int64) {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatalf("read cpu of pid %d: %v", pid, err)
	}
	// Fields after the command's closing parenthesis: state is field 3,
	// utime 14, stime 15.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u, s
}

// TestUDPBlast sends 64-byte UDP datagrams as fast as one sender can, for
// blastDuration, from one pod to another through a VIP, and reports the
// rate the forwarder sustained and per core of forwarder CPU. It asserts
// only that the counters account for what was received.
func TestUDPBlast(t *testing.T) {
	requireAFXDP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := newCluster(t, ctx, 1, []testbed.PodSpec{{Name: "client", Node: 0}, {Name: "server", Node: 0}})
	client, server := c.Pod("client"), c.Pod("server")
	const port = 9000
	svc := &datapaths.Service{Name: "blast", Port: port, VIP: netip.MustParseAddr("198.19.128.20"), Backends: []*testbed.Pod{server}}
	d := afxdp.New()
	install(t, ctx, d, &datapaths.Env{Cluster: c, Services: []*datapaths.Service{svc}, Client: client, Exec: exe(t)})
	t.Cleanup(func() { _ = d.Uninstall(context.Background()) })
	var fwd *testbed.Process
	for _, p := range c.Processes() {
		if strings.HasPrefix(p.Name, "forwarder-") {
			fwd = p
		}
	}
	if fwd == nil {
		t.Fatal("no forwarder process")
	}

	var rx net.PacketConn
	if err := nsutil.Do(server.NetnsPath, func() (err error) {
		rx, err = net.ListenPacket("udp4", net.JoinHostPort(server.IP.String(), strconv.Itoa(port)))
		return err
	}); err != nil {
		t.Fatalf("listen udp in server: %v", err)
	}
	defer rx.Close()
	if uc, ok := rx.(*net.UDPConn); ok {
		_ = uc.SetReadBuffer(8 << 20)
	}
	var received atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			if _, _, err := rx.ReadFrom(buf); err != nil {
				return
			}
			received.Add(1)
		}
	}()
	var txc net.PacketConn
	if err := nsutil.Do(client.NetnsPath, func() (err error) {
		txc, err = net.ListenPacket("udp4", net.JoinHostPort(client.IP.String(), "0"))
		return err
	}); err != nil {
		t.Fatalf("open udp socket in client: %v", err)
	}
	defer txc.Close()
	// sendmmsg: one system call per batch, so the sender is not what limits
	// the rate.
	tx := ipv4.NewPacketConn(txc)
	to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(svc.VIP, port))
	msgs := make([]ipv4.Message, 64)
	for i := range msgs {
		msgs[i] = ipv4.Message{Buffers: [][]byte{make([]byte, 64)}, Addr: to}
	}

	before := counters(t, ctx, d)
	u0, s0 := cpuTicks(t, fwd.PID)
	var sent int64
	start := time.Now()
	for time.Since(start) < blastDuration && sent < 20_000_000 {
		for range 16 {
			n, _ := tx.WriteBatch(msgs, 0)
			sent += int64(n)
		}
	}
	elapsed := time.Since(start)
	time.Sleep(200 * time.Millisecond) // let the rings drain
	u1, s1 := cpuTicks(t, fwd.PID)
	after := counters(t, ctx, d)
	rx.Close()
	<-done
	delta := map[string]int64{}
	for k, v := range after {
		delta[k] = v - before[k]
	}
	forwarded := delta["nat_hits"]
	userSec, sysSec := float64(u1-u0)/100, float64(s1-s0)/100 // USER_HZ
	cpuSec := userSec + sysSec
	pps := float64(forwarded) / elapsed.Seconds()
	perCore := 0.0
	if cpuSec > 0 {
		perCore = float64(forwarded) / cpuSec
	}
	t.Logf("UDP blast %v: sent %d, forwarder received %d and NATed %d, tx %d, dropped %d (fill ring empty %d, rx ring full %d), server received %d",
		elapsed.Round(time.Millisecond), sent, delta["rx_frames"], forwarded, delta["tx_frames"], delta["dropped"], delta["fill_ring_empty"], delta["rx_ring_full"], received.Load())
	t.Logf("forwarder: %.0f pps, %.2f CPU-seconds (user %.2f, system %.2f: copy-mode TX builds an skb per frame), %.0f pps per core",
		pps, cpuSec, userSec, sysSec, perCore)
	if received.Load() == 0 || forwarded == 0 {
		t.Fatalf("nothing went through the forwarder: %v", delta)
	}
	// Everything the server got went through the forwarder's NAT.
	if received.Load() > forwarded {
		t.Errorf("server received %d datagrams but the forwarder NATed only %d", received.Load(), forwarded)
	}
	if delta["tx_frames"] < received.Load() {
		t.Errorf("forwarder sent %d frames, fewer than the %d the server received", delta["tx_frames"], received.Load())
	}
	if delta["xdp_redirected"] < delta["rx_frames"] {
		t.Errorf("sockets received %d frames, more than XDP redirected (%d)", delta["rx_frames"], delta["xdp_redirected"])
	}
}
