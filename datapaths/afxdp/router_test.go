package afxdp

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/datapaths/maglev"
	"github.com/meshbench/meshbench/harness/testbed"
)

func testConfig() *Config {
	return &Config{
		Node: 0,
		Nodes: []NodeConfig{
			{Name: "n0", Index: 0, PodCIDR: netip.MustParsePrefix("198.18.0.0/24"), Gateway: netip.MustParseAddr("198.18.0.1"), Uplink: "uplink", UplinkMAC: "02:03:c6:13:00:01", BridgeMAC: "02:02:c6:12:00:01"},
			{Name: "n1", Index: 1, PodCIDR: netip.MustParsePrefix("198.18.1.0/24"), Gateway: netip.MustParseAddr("198.18.1.1"), Uplink: "uplink", UplinkMAC: "02:03:c6:13:00:02", BridgeMAC: "02:02:c6:12:01:01"},
		},
		Pods: []PodConfig{
			{Name: "client", Node: 0, IP: netip.MustParseAddr("198.18.0.10"), MAC: "02:00:c6:12:00:0a", HostVeth: "p0"},
			{Name: "local", Node: 0, IP: netip.MustParseAddr("198.18.0.11"), MAC: "02:00:c6:12:00:0b", HostVeth: "p1"},
			{Name: "remote", Node: 1, IP: netip.MustParseAddr("198.18.1.10"), MAC: "02:00:c6:12:01:0a", HostVeth: "p2"},
		},
		Services: []ServiceConfig{
			{Name: "local", VIP: netip.MustParseAddr("198.19.128.1"), Port: 80, Backends: []netip.AddrPort{netip.MustParseAddrPort("198.18.0.11:8080")}},
			{Name: "remote", VIP: netip.MustParseAddr("198.19.128.2"), Port: 80, Backends: []netip.AddrPort{netip.MustParseAddrPort("198.18.1.10:8080")}},
		},
	}
}

// sum16 is the Internet checksum's one's-complement sum of b.
func sum16(s uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = (s & 0xffff) + (s >> 16)
	}
	return ^uint16(s)
}

// checksums computes the IP and L4 checksums of frame from scratch, with
// the checksum fields taken as zero.
func checksums(frame []byte) (ip, l4 uint16) {
	hdr := append([]byte{}, frame[ethLen:ethLen+20]...)
	hdr[10], hdr[11] = 0, 0
	ip = fold(sum16(0, hdr))
	seg := append([]byte{}, frame[ethLen+20:]...)
	off := tcpCsumOff
	if frame[ipProto] == protoUDP {
		off = udpCsumOff
	}
	seg[off], seg[off+1] = 0, 0
	s := sum16(0, frame[ipSrc:ipDst+4])
	s += uint32(frame[ipProto]) + uint32(len(seg))
	l4 = fold(sum16(s, seg))
	return ip, l4
}

// packet builds an Ethernet/IPv4 frame with correct checksums.
func packet(proto byte, src, dst netip.AddrPort, ttl byte, payload string) []byte {
	l4len := 20
	if proto == protoUDP {
		l4len = 8
	}
	f := make([]byte, ethLen+20+l4len+len(payload))
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[ethLen:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+l4len+len(payload)))
	ip[8], ip[9] = ttl, proto
	copy(ip[12:], src.Addr().AsSlice())
	copy(ip[16:], dst.Addr().AsSlice())
	l4 := ip[20:]
	binary.BigEndian.PutUint16(l4[0:], src.Port())
	binary.BigEndian.PutUint16(l4[2:], dst.Port())
	if proto == protoTCP {
		l4[12] = 5 << 4
		l4[13] = 0x18
	} else {
		binary.BigEndian.PutUint16(l4[4:], uint16(8+len(payload)))
	}
	copy(l4[l4len:], payload)
	ipc, l4c := checksums(f)
	binary.BigEndian.PutUint16(f[ipCsum:], ipc)
	off := tcpCsumOff
	if proto == protoUDP {
		off = udpCsumOff
	}
	binary.BigEndian.PutUint16(f[ethLen+20+off:], l4c)
	return f
}

func TestForward(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		name       string
		frame      []byte
		zeroUDP    bool
		ok         bool
		out        int // 0 client, 1 local, 2 uplink
		src, dst   netip.AddrPort
		dstMAC     string
		nat, rnat  int64
		dropReason int
	}{
		{name: "tcp to local VIP", frame: packet(protoTCP, ap("198.18.0.10:40000"), ap("198.19.128.1:80"), 64, "GET /"), ok: true, out: 1,
			src: ap("198.18.0.10:40000"), dst: ap("198.18.0.11:8080"), dstMAC: "02:00:c6:12:00:0b", nat: 1},
		{name: "tcp reply from local backend", frame: packet(protoTCP, ap("198.18.0.11:8080"), ap("198.18.0.10:40000"), 64, "200 OK"), ok: true, out: 0,
			src: ap("198.19.128.1:80"), dst: ap("198.18.0.10:40000"), dstMAC: "02:00:c6:12:00:0a", rnat: 1},
		{name: "udp to remote VIP goes to the uplink", frame: packet(protoUDP, ap("198.18.0.10:5000"), ap("198.19.128.2:80"), 64, "odd-length"), ok: true, out: 2,
			src: ap("198.18.0.10:5000"), dst: ap("198.18.1.10:8080"), dstMAC: "02:03:c6:13:00:02", nat: 1},
		{name: "udp without checksum keeps none", frame: packet(protoUDP, ap("198.18.0.10:5000"), ap("198.19.128.1:80"), 64, "x"), zeroUDP: true, ok: true, out: 1,
			src: ap("198.18.0.10:5000"), dst: ap("198.18.0.11:8080"), dstMAC: "02:00:c6:12:00:0b", nat: 1},
		{name: "pod to pod is routed unchanged", frame: packet(protoTCP, ap("198.18.0.10:40000"), ap("198.18.1.10:9999"), 64, ""), ok: true, out: 2,
			src: ap("198.18.0.10:40000"), dst: ap("198.18.1.10:9999"), dstMAC: "02:03:c6:13:00:02"},
		{name: "unknown destination", frame: packet(protoTCP, ap("198.18.0.10:40000"), ap("198.18.7.7:80"), 64, ""), dropReason: dropNoRoute},
		{name: "ttl expired", frame: packet(protoTCP, ap("198.18.0.10:40000"), ap("198.19.128.1:80"), 1, ""), dropReason: dropTTL},
		{name: "truncated", frame: make([]byte, 20), dropReason: dropMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, locals, err := newRouter(testConfig())
			if err != nil {
				t.Fatal(err)
			}
			if len(locals) != 2 || r.uplinkOut != 2 {
				t.Fatalf("locals %v, uplink output %d", locals, r.uplinkOut)
			}
			f := tt.frame
			if tt.zeroUDP {
				binary.BigEndian.PutUint16(f[ethLen+20+udpCsumOff:], 0)
			}
			out, ok := r.forward(f)
			if ok != tt.ok {
				t.Fatalf("forward ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				if got := r.drops[tt.dropReason].Load(); got != 1 {
					t.Errorf("drop reason %d counted %d times", tt.dropReason, got)
				}
				return
			}
			if out != tt.out {
				t.Errorf("output %d, want %d", out, tt.out)
			}
			src := netip.AddrPortFrom(netip.AddrFrom4([4]byte(f[ipSrc:])), binary.BigEndian.Uint16(f[ethLen+20:]))
			dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte(f[ipDst:])), binary.BigEndian.Uint16(f[ethLen+22:]))
			if src != tt.src || dst != tt.dst {
				t.Errorf("rewritten to %s → %s, want %s → %s", src, dst, tt.src, tt.dst)
			}
			if got, _ := mac6(tt.dstMAC); [6]byte(f[0:6]) != got {
				t.Errorf("destination MAC % x, want %s", f[0:6], tt.dstMAC)
			}
			if f[ipTTL] != 63 {
				t.Errorf("ttl %d, want 63", f[ipTTL])
			}
			wantIP, wantL4 := checksums(f)
			if got := binary.BigEndian.Uint16(f[ipCsum:]); got != wantIP {
				t.Errorf("IP checksum %#04x, want %#04x", got, wantIP)
			}
			off := tcpCsumOff
			if f[ipProto] == protoUDP {
				off = udpCsumOff
			}
			got := binary.BigEndian.Uint16(f[ethLen+20+off:])
			switch {
			case tt.zeroUDP && got != 0:
				t.Errorf("UDP checksum %#04x, want 0 (none)", got)
			case !tt.zeroUDP && got != wantL4:
				t.Errorf("L4 checksum %#04x, want %#04x", got, wantL4)
			}
			if r.natHits.Load() != tt.nat || r.reverseNATHits.Load() != tt.rnat {
				t.Errorf("nat hits %d, reverse %d; want %d, %d", r.natHits.Load(), r.reverseNATHits.Load(), tt.nat, tt.rnat)
			}
		})
	}
}

// A connection's packets all go to one backend, and connections spread.
func TestMaglevAffinity(t *testing.T) {
	cfg := testConfig()
	cfg.Services[0].Backends = []netip.AddrPort{netip.MustParseAddrPort("198.18.0.11:8080"), netip.MustParseAddrPort("198.18.1.10:8080")}
	r, _, err := newRouter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Addr]int{}
	for port := uint16(40000); port < 40200; port++ {
		var first netip.Addr
		for i := range 3 {
			f := packet(protoTCP, netip.AddrPortFrom(netip.MustParseAddr("198.18.0.10"), port), netip.MustParseAddrPort("198.19.128.1:80"), 64, "")
			if _, ok := r.forward(f); !ok {
				t.Fatal("dropped")
			}
			b := netip.AddrFrom4([4]byte(f[ipDst:]))
			if i == 0 {
				first = b
				seen[b]++
			} else if b != first {
				t.Fatalf("port %d: packet %d went to %s, first to %s", port, i, b, first)
			}
		}
	}
	if len(seen) != 2 || seen[netip.MustParseAddr("198.18.0.11")] < 60 || seen[netip.MustParseAddr("198.18.1.10")] < 60 {
		t.Errorf("200 connections spread as %v", seen)
	}
}

// TestMaglevSharedTable: the forwarder picks, for a connection, the backend
// the shared Maglev table gives for the connection's hash; the builtin
// proxy picks from the same table (datapaths/proxy's "maglev is the shared
// table"), so for the same hash both choose the same backend.
func TestMaglevSharedTable(t *testing.T) {
	cfg := testConfig()
	backends := []netip.AddrPort{netip.MustParseAddrPort("198.18.0.11:8080"), netip.MustParseAddrPort("198.18.1.10:8080"), netip.MustParseAddrPort("198.18.0.11:8081")}
	cfg.Services[0].Backends = backends
	r, _, err := newRouter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(backends))
	for i, b := range backends {
		names[i] = b.String()
	}
	table, err := maglev.New(names, maglev.DefaultSize)
	if err != nil {
		t.Fatal(err)
	}
	src, vip := netip.MustParseAddr("198.18.0.10"), netip.MustParseAddrPort("198.19.128.1:80")
	for port := uint16(40000); port < 40300; port++ {
		f := packet(protoTCP, netip.AddrPortFrom(src, port), vip, 64, "")
		if _, ok := r.forward(f); !ok {
			t.Fatal("dropped")
		}
		got := netip.AddrFrom4([4]byte(f[ipDst:]))
		want := netip.MustParseAddrPort(table.Backend(maglev.HashAddrPorts(protoTCP, netip.AddrPortFrom(src, port), vip))).Addr()
		if got != want {
			t.Fatalf("port %d: forwarder chose %s, the shared table %s", port, got, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
	}{
		{name: "node out of range", mutate: func(c *Config) { c.Node = 2 }},
		{name: "VIP outside range", mutate: func(c *Config) { c.Services[0].VIP = netip.MustParseAddr("198.18.0.99") }},
		{name: "no backends", mutate: func(c *Config) { c.Services[0].Backends = nil }},
		{name: "bad MAC", mutate: func(c *Config) { c.Pods[0].MAC = "nope" }},
		{name: "pod on unknown node", mutate: func(c *Config) { c.Pods[0].Node = 5 }},
	}
	if err := testConfig().Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig()
			tt.mutate(c)
			if err := c.Validate(); err == nil {
				t.Error("Validate accepted it")
			}
		})
	}
}

func TestVerify(t *testing.T) {
	// The client pod sent 3000 segments and received 3000: through the
	// forwarder's socket on its host veth, each NATed.
	sock := "/node-0/veth-client"
	all := func(rx, tx, nat, rnat int64) map[string]int64 {
		return map[string]int64{"rx_frames" + sock: rx, "tx_frames" + sock: tx, "nat_hits": nat, "reverse_nat_hits": rnat}
	}
	w := datapaths.Work{Successes: 1500, ClientOutSegs: 3000, ClientInSegs: 3000, Slack: 5, SlackWhy: "test"}
	tests := []struct {
		name  string
		delta map[string]int64
		work  datapaths.Work
		ok    bool
	}{
		{name: "all accounted", delta: all(3000, 3000, 3000, 3000), work: w, ok: true},
		{name: "in flight on the edges", delta: all(3007, 2994, 3007, 2994), work: w, ok: true},
		{name: "bypassed", delta: all(0, 0, 0, 0), work: w},
		{name: "half the client's segments bypassed", delta: all(1500, 3000, 1500, 3000), work: w},
		{name: "replies not translated", delta: all(3000, 3000, 3000, 10), work: w},
		{name: "no successes", delta: all(10, 10, 10, 10), work: datapaths.Work{ClientOutSegs: 10, ClientInSegs: 10}},
	}
	d := New()
	d.env = &datapaths.Env{Client: &testbed.Pod{Name: "client", Node: "node-0", HostVeth: "veth-client"}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := datapaths.Prove(d.ProofSource(), d.Verify, tt.delta, tt.work)
			if p.Verified != tt.ok {
				t.Errorf("proof = %v (%s), want %v", p.Verified, p.Detail, tt.ok)
			}
		})
	}
}
