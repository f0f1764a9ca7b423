package steer

import (
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/meshbench/meshbench/bpf/internal/bpftest"
	"github.com/meshbench/meshbench/harness/testbed/testutil"
)

func TestMain(m *testing.M) {
	bpftest.Main()
	os.Exit(testutil.TestMainLeakCheck(m))
}

func TestLoadRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no proxy", Config{}},
		{"ipv6 proxy", Config{Proxy: netip.MustParseAddrPort("[::1]:15001")}},
		{"proxy port 0", Config{Proxy: netip.MustParseAddrPort("127.0.0.1:0")}},
		{"ipv6 meshed", Config{Proxy: netip.MustParseAddrPort("127.0.0.1:15001"), Meshed: []netip.Prefix{netip.MustParsePrefix("fd00::/8")}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if o, err := Load(tc.cfg); err == nil {
				o.Close()
				t.Fatalf("Load(%+v) succeeded, want an error", tc.cfg)
			}
		})
	}
}

var attachTypes = []ebpf.AttachType{ebpf.AttachCGroupInet4Connect, ebpf.AttachCGroupSockOps, ebpf.AttachCGroupGetsockopt}

func TestSteerInPod(t *testing.T) {
	pod := bpftest.NewPod(t)
	objs, err := Load(Config{Proxy: netip.MustParseAddrPort("127.0.0.1:15001")})
	bpftest.RequireLoaded(t, "load steer", err)
	progs, err := objs.ProgramIDs()
	if err != nil {
		t.Fatal(err)
	}
	att, err := objs.AttachCgroup(pod.Pod.CgroupPath)
	bpftest.RequireLoaded(t, "attach steer", err)
	links := att.LinkIDs()
	if len(links) != len(attachTypes) {
		t.Errorf("got %d BPF links, want %d (one per program)", len(links), len(attachTypes))
	}
	detached := false
	detach := func() {
		if detached {
			return
		}
		detached = true
		if err := att.Close(); err != nil {
			t.Errorf("detach: %v", err)
		}
		if err := objs.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}
	t.Cleanup(detach)

	pod.StartProxy(t, "127.0.0.1:15001", bpftest.ProxyUID)
	pod.Backend(t, "0.0.0.0:8080")
	podIP := pod.Pod.IP.String()

	for _, tc := range []struct {
		name    string
		uid     uint32
		addr    string
		want    string
		counter string
	}{
		{"meshed destination is steered", 0, "198.18.200.1:80", "ORIG 198.18.200.1:80", "steer_rewrites"},
		{"pod address is steered", 0, podIP + ":8080", "ORIG " + podIP + ":8080", "steer_rewrites"},
		{"proxy uid is not steered", bpftest.ProxyUID, podIP + ":8080", "BACKEND", "steer_skipped_uid"},
		{"loopback is not meshed", 0, "127.0.0.1:8080", "BACKEND", "steer_skipped_dst"},
		{"the proxy itself is not steered", 0, "127.0.0.1:15001", "ORIG none", "steer_skipped_dst"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, err := objs.Counters()
			if err != nil {
				t.Fatal(err)
			}
			got := pod.Client(t, tc.addr, tc.uid, 10, 64)
			after, err := objs.Counters()
			if err != nil {
				t.Fatal(err)
			}
			if got.First != tc.want || got.Rounds != 10 {
				t.Errorf("client to %s: first line %q, %d rounds; want %q, 10", tc.addr, got.First, got.Rounds, tc.want)
			}
			if d := after[tc.counter] - before[tc.counter]; d != 1 {
				t.Errorf("%s moved by %d, want 1 (before %v, after %v)", tc.counter, d, before, after)
			}
			if tc.want[:4] == "ORIG" && tc.want != "ORIG none" {
				for _, c := range []string{"steer_tuples", "steer_getsockopt_hits"} {
					if d := after[c] - before[c]; d != 1 {
						t.Errorf("%s moved by %d, want 1", c, d)
					}
				}
			}
			t.Logf("counters after: %v", after)
		})
	}

	t.Run("OriginalDst from user space", func(t *testing.T) {
		var (
			k    steerTuple
			v    steerOrigDst
			seen int
		)
		it := objs.objs.OrigByTuple.Iterate()
		for it.Next(&k, &v) {
			seen++
			client := netip.AddrPortFrom(u32Addr(k.Sip), k.Sport)
			proxy := netip.AddrPortFrom(u32Addr(k.Dip), k.Dport)
			dst, ok, err := objs.OriginalDst(client, proxy)
			if err != nil || !ok {
				t.Fatalf("OriginalDst(%v, %v) = %v, %v, %v", client, proxy, dst, ok, err)
			}
			if proxy.String() != "127.0.0.1:15001" || (dst.String() != "198.18.200.1:80" && dst.String() != podIP+":8080") {
				t.Errorf("entry %v -> %v: original destination %v", client, proxy, dst)
			}
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		if seen != 2 {
			t.Errorf("%d recorded connections, want 2 (the steered ones)", seen)
		}
		if _, ok, err := objs.OriginalDst(netip.MustParseAddrPort("127.0.0.1:1"), netip.MustParseAddrPort("127.0.0.1:15001")); ok || err != nil {
			t.Errorf("unknown connection: ok %v, err %v", ok, err)
		}
	})

	t.Run("detached on close", func(t *testing.T) {
		detach()
		bpftest.CheckDetached(t, pod.Pod.CgroupPath, attachTypes, progs, links)
		// With nothing attached the same connect goes where it was sent.
		got := pod.Client(t, "127.0.0.1:8080", 0, 1, 64)
		if got.First != "BACKEND" {
			t.Errorf("after detach: first line %q, want BACKEND", got.First)
		}
	})
}

func u32Addr(v uint32) netip.Addr {
	var b [4]byte
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
	return netip.AddrFrom4(b)
}
