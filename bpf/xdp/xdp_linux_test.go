package xdp

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
)

// xdpMd is struct xdp_md, the context BPF_PROG_TEST_RUN takes.
type xdpMd struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

const (
	xdpPass = 2
	lo      = 1 // the loopback device's ifindex in every namespace
)

func frame(etherType uint16, proto byte, dst string, fragOff uint16) []byte {
	f := make([]byte, 14+20+20)
	binary.BigEndian.PutUint16(f[12:], etherType)
	ip := f[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[6:], fragOff)
	ip[8], ip[9] = 64, proto
	copy(ip[12:], netip.MustParseAddr("198.18.0.10").AsSlice())
	copy(ip[16:], netip.MustParseAddr(dst).AsSlice())
	return f
}

// TestProgram runs the program on crafted frames with BPF_PROG_TEST_RUN:
// what is not IPv4 TCP/UDP to a routed destination is passed, and a
// routed frame on an interface with a slot but no socket is counted as
// such and passed too (redirection itself is tested end to end in
// datapaths/afxdp).
func TestProgram(t *testing.T) {
	p := load(t)
	defer p.Close()
	for _, r := range []struct {
		prefix   string
		redirect bool
	}{{"198.18.0.0/24", true}, {"198.18.0.1/32", false}, {"198.19.128.0/17", true}} {
		if err := p.Route(netip.MustParsePrefix(r.prefix), r.redirect); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.objs.Slots.Put(uint32(lo), uint32(7)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		frame   []byte
		ifindex uint32
		noSlot  bool
		counter string
	}{
		{name: "arp", frame: frame(0x0806, 0, "198.18.0.11", 0), ifindex: lo, counter: "xdp_passed"},
		{name: "icmp", frame: frame(0x0800, 1, "198.18.0.11", 0), ifindex: lo, counter: "xdp_passed"},
		{name: "tcp to gateway", frame: frame(0x0800, 6, "198.18.0.1", 0), ifindex: lo, counter: "xdp_passed"},
		{name: "tcp outside routes", frame: frame(0x0800, 6, "198.19.0.2", 0), ifindex: lo, counter: "xdp_passed"},
		{name: "udp fragment", frame: frame(0x0800, 17, "198.18.0.11", 0x2000), ifindex: lo, counter: "xdp_passed"},
		{name: "tcp on interface without slot", frame: frame(0x0800, 6, "198.18.0.11", 0), ifindex: lo, noSlot: true, counter: "xdp_passed"},
		{name: "tcp to pod, slot without socket", frame: frame(0x0800, 6, "198.18.0.11", 0), ifindex: lo, counter: "xdp_no_socket"},
		{name: "udp to VIP, slot without socket", frame: frame(0x0800, 17, "198.19.128.5", 0), ifindex: lo, counter: "xdp_no_socket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.noSlot {
				if err := p.objs.Slots.Delete(uint32(lo)); err != nil {
					t.Fatal(err)
				}
				defer func() { _ = p.objs.Slots.Put(uint32(lo), uint32(7)) }()
			}
			before, err := p.Counters()
			if err != nil {
				t.Fatal(err)
			}
			ctx := xdpMd{DataEnd: uint32(len(tt.frame)), IngressIfindex: tt.ifindex}
			ret, err := p.objs.XdpRedirectPod.Run(&ebpf.RunOptions{Data: tt.frame, Context: ctx})
			if err != nil {
				t.Fatalf("test run: %v", err)
			}
			if ret != xdpPass {
				t.Errorf("verdict %d, want XDP_PASS", ret)
			}
			after, err := p.Counters()
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range counterNames {
				want := before[name]
				if name == tt.counter || name == "xdp_seen" {
					want++
				}
				if after[name] != want {
					t.Errorf("%s = %d, want %d", name, after[name], want)
				}
			}
		})
	}
}

func TestMemlock(t *testing.T) {
	p := load(t)
	defer p.Close()
	n, err := p.MemlockBytes()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("xdp program and maps: %d KiB", n>>10)
	if n <= 0 {
		t.Errorf("memlock %d bytes, want > 0", n)
	}
}

// load loads the program, skipping when not root or when the kernel
// cannot load it.
func load(t *testing.T) *Program {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF programs")
	}
	p, err := Load()
	if err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) {
			t.Skipf("kernel cannot load the XDP program: %v", err)
		}
		t.Fatal(err)
	}
	return p
}
