package steer

import (
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/meshbench/meshbench/bpf/internal/bpftest"
	"github.com/meshbench/meshbench/harness/testbed/testutil"
	"github.com/meshbench/meshbench/internal/nsutil"
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

	t.Run("port filter", func(t *testing.T) {
		// A second set of programs that steers only port 80, attached
		// while the first is detached.
		if err := att.Close(); err != nil {
			t.Fatal(err)
		}
		po, err := Load(Config{Proxy: netip.MustParseAddrPort("127.0.0.1:15001"), Ports: []uint16{80}})
		bpftest.RequireLoaded(t, "load steer with ports", err)
		defer po.Close()
		pa, err := po.AttachCgroup(pod.Pod.CgroupPath)
		bpftest.RequireLoaded(t, "attach steer with ports", err)
		defer pa.Close()
		for addr, want := range map[string]string{
			"198.18.200.1:80": "ORIG 198.18.200.1:80",
			podIP + ":8080":   "BACKEND",
		} {
			if got := pod.Client(t, addr, 0, 1, 64); got.First != want {
				t.Errorf("client to %s: first line %q, want %q", addr, got.First, want)
			}
		}
		c, err := po.Counters()
		if err != nil {
			t.Fatal(err)
		}
		if c["steer_rewrites"] != 1 || c["steer_skipped_dst"] != 1 {
			t.Errorf("counters %v, want 1 rewrite and 1 skipped", c)
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

// TestSteerToNodeProxy steers a pod's connects to a proxy in its node's
// network namespace, as the nodeproxy datapath does, and checks both ways
// the node proxy can recover the original destination.
func TestSteerToNodeProxy(t *testing.T) {
	pod := bpftest.NewPod(t)
	node := pod.Cluster.Nodes()[pod.Pod.NodeIndex]
	proxy := netip.AddrPortFrom(node.Gateway, 15001)
	objs, err := Load(Config{Proxy: proxy})
	bpftest.RequireLoaded(t, "load steer", err)
	t.Cleanup(func() { objs.Close() })
	progs, err := objs.ProgramIDs()
	if err != nil {
		t.Fatal(err)
	}
	att, err := objs.AttachCgroup(pod.Pod.CgroupPath)
	bpftest.RequireLoaded(t, "attach steer", err)
	t.Cleanup(func() { att.Close() })
	links := att.LinkIDs()

	t.Run("getsockopt on the node proxy's cgroup", func(t *testing.T) {
		proc := pod.StartNodeProxy(t, "0.0.0.0:15001")
		cg, err := bpftest.CgroupOf(proc.PID)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(cg, pod.Cluster.RunID()) {
			t.Fatalf("node proxy runs in cgroup %s, not one of run %s", cg, pod.Cluster.RunID())
		}
		ga, err := objs.AttachGetsockopt(cg)
		bpftest.RequireLoaded(t, "attach getsockopt to the node cgroup", err)
		links = append(links, ga.LinkIDs()...)
		defer func() {
			ga.Close()
			bpftest.CheckDetached(t, cg, []ebpf.AttachType{ebpf.AttachCGroupGetsockopt}, nil, ga.LinkIDs())
		}()
		got := pod.Client(t, "198.18.200.1:80", 0, 10, 64)
		if got.First != "ORIG 198.18.200.1:80" || got.Rounds != 10 {
			t.Errorf("client: first line %q, %d rounds", got.First, got.Rounds)
		}
	})

	t.Run("map lookup by the node proxy", func(t *testing.T) {
		l, err := nsutil.Listen(node.NetnsPath, "tcp4", "0.0.0.0:15001")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		defer func() { l.Close(); <-done }()
		go func() {
			defer close(done)
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			client := c.RemoteAddr().(*net.TCPAddr).AddrPort()
			local := c.LocalAddr().(*net.TCPAddr).AddrPort()
			line := "ORIG none\n"
			if dst, ok, err := objs.OriginalDst(unmap(client), unmap(local)); err == nil && ok {
				line = "ORIG " + dst.String() + "\n"
			}
			if _, err := c.Write([]byte(line)); err == nil {
				bpftest.Echo(c)
			}
		}()
		got := pod.Client(t, "198.18.201.7:8443", 0, 10, 64)
		if got.First != "ORIG 198.18.201.7:8443" || got.Rounds != 10 {
			t.Errorf("client: first line %q, %d rounds", got.First, got.Rounds)
		}
	})

	c, err := objs.Counters()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("counters: %v", c)
	if c["steer_rewrites"] != 2 || c["steer_tuples"] != 2 {
		t.Errorf("counters %v, want 2 rewrites and 2 tuples", c)
	}
	if err := att.Close(); err != nil {
		t.Fatal(err)
	}
	if err := objs.Close(); err != nil {
		t.Fatal(err)
	}
	bpftest.CheckDetached(t, pod.Pod.CgroupPath, attachTypes, progs, links)
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// TestMemlock: the kernel memory of the loaded objects, which no process's
// RSS shows, is read; the two preallocated 65536-entry LRU maps of original
// destinations hold at least their keys and values.
func TestMemlock(t *testing.T) {
	objs, err := Load(Config{Proxy: netip.MustParseAddrPort("127.0.0.1:15001")})
	bpftest.RequireLoaded(t, "load steer", err)
	defer objs.Close()
	n, err := objs.MemlockBytes()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("steer programs and maps: %d KiB", n>>10)
	if floor := int64(65536 * (8 + 8 + 12 + 8)); n < floor {
		t.Errorf("memlock %d bytes, want at least %d (keys and values of orig_by_cookie and orig_by_tuple)", n, floor)
	}
}
