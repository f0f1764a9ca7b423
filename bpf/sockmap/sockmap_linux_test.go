package sockmap

import (
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/meshbench/meshbench/bpf/internal/bpftest"
	"github.com/meshbench/meshbench/bpf/steer"
	"github.com/meshbench/meshbench/harness/testbed/testutil"
)

func TestMain(m *testing.M) {
	bpftest.Main()
	os.Exit(testutil.TestMainLeakCheck(m))
}

const (
	rounds = 1000
	size   = 64
)

// TestSockmapInPod attaches the programs to a pod whose sidecar-like proxy
// echoes on 127.0.0.1:15001, and checks that app<->proxy bytes are
// redirected socket to socket: the counters account for every byte, and
// the pod's TCP stack sees almost no segments for the round trips.
func TestSockmapInPod(t *testing.T) {
	pod := bpftest.NewPod(t)
	pod.StartProxy(t, "127.0.0.1:15001", bpftest.ProxyUID)
	pod.Backend(t, "127.0.0.1:8080")
	ns := pod.Pod.NetnsPath

	// The same round trips without the programs, for the segment count.
	in0 := bpftest.InSegs(t, ns)
	if got := pod.Client(t, "127.0.0.1:15001", 0, rounds, size); got.Rounds != rounds {
		t.Fatalf("without sockmap: %d rounds, want %d", got.Rounds, rounds)
	}
	without := bpftest.InSegs(t, ns) - in0

	objs, err := Load(Config{IgnorePorts: []uint16{15090}})
	bpftest.RequireLoaded(t, "load sockmap", err)
	progs, err := objs.ProgramIDs()
	if err != nil {
		t.Fatal(err)
	}
	att, err := objs.AttachCgroup(pod.Pod.CgroupPath)
	bpftest.RequireLoaded(t, "attach sockmap", err)
	links := append(att.LinkIDs(), objs.LinkIDs()...)
	if len(links) != 2 {
		t.Errorf("got BPF links %v, want 2 (sock_ops on the cgroup, sk_msg on the sockhash)", links)
	}
	closed := false
	closeAll := func() {
		if closed {
			return
		}
		closed = true
		if err := att.Close(); err != nil {
			t.Errorf("detach: %v", err)
		}
		if err := objs.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}
	t.Cleanup(closeAll)
	// The proxy's listener predates the attachment: that is fine, sock_ops
	// runs when each connection is established.

	var with uint64
	t.Run("app to sidecar is redirected", func(t *testing.T) {
		before := counters(t, objs)
		in0 := bpftest.InSegs(t, ns)
		got := pod.Client(t, "127.0.0.1:15001", 0, rounds, size)
		with = bpftest.InSegs(t, ns) - in0
		after := counters(t, objs)
		if got.First != "ORIG none" || got.Rounds != rounds {
			t.Fatalf("client: first line %q, %d rounds", got.First, got.Rounds)
		}
		d := delta(before, after)
		t.Logf("counter deltas: %v", d)
		// Both ends of the one connection.
		if d["sockmap_inserted"] != 2 {
			t.Errorf("inserted %d sockets, want 2", d["sockmap_inserted"])
		}
		// Every byte each way went socket to socket: the client's
		// requests, the proxy's first line and its echoes.
		wantBytes := uint64(2*rounds*size + len("ORIG none\n"))
		if d["sockmap_bytes"] != wantBytes {
			t.Errorf("redirected %d bytes, want %d", d["sockmap_bytes"], wantBytes)
		}
		if d["sockmap_redirects"] < rounds+1 || d["sockmap_redirect_misses"] != 0 {
			t.Errorf("redirects %d (want >= %d), misses %d (want 0)", d["sockmap_redirects"], rounds+1, d["sockmap_redirect_misses"])
		}
	})

	t.Run("segments per round trip", func(t *testing.T) {
		t.Logf("pod TCP InSegs for %d round trips of %d B: without sockmap %d (%.2f per round trip), with sockmap %d (%.3f per round trip)",
			rounds, size, without, float64(without)/rounds, with, float64(with)/rounds)
		if without < rounds {
			t.Errorf("without sockmap only %d segments for %d round trips", without, rounds)
		}
		// With sockmap only the handshake and teardown remain.
		if with > rounds/10 {
			t.Errorf("with sockmap %d segments for %d round trips, want almost none", with, rounds)
		}
	})

	t.Run("peer outside the pod cgroup is not redirected", func(t *testing.T) {
		before := counters(t, objs)
		got := pod.Client(t, "127.0.0.1:8080", 0, 10, size)
		d := delta(before, counters(t, objs))
		if got.First != "BACKEND" || got.Rounds != 10 {
			t.Fatalf("client: first line %q, %d rounds", got.First, got.Rounds)
		}
		// Only the client's socket is in the cgroup; its messages find no
		// peer in the sockhash and take the TCP path.
		if d["sockmap_inserted"] != 1 || d["sockmap_redirects"] != 0 || d["sockmap_redirect_misses"] < 10 {
			t.Errorf("counter deltas %v, want 1 inserted, 0 redirects, >= 10 misses", d)
		}
	})

	// Go's net.Listen("tcp", ":port") and most servers listen dual-stack:
	// their accepted sockets are AF_INET6 with IPv4-mapped addresses. Both
	// ends must still be spliced, in both directions.
	t.Run("dual-stack listener is spliced", func(t *testing.T) {
		pod.StartProxy(t, "[::]:8081", 0)
		before := counters(t, objs)
		got := pod.Client(t, "127.0.0.1:8081", 0, rounds, size)
		d := delta(before, counters(t, objs))
		if got.First != "ORIG none" || got.Rounds != rounds {
			t.Fatalf("client: first line %q, %d rounds", got.First, got.Rounds)
		}
		t.Logf("counter deltas: %v", d)
		if d["sockmap_inserted"] != 2 || d["sockmap_redirects"] < 2*rounds || d["sockmap_redirect_misses"] != 0 {
			t.Errorf("counter deltas %v, want 2 inserted, >= %d redirects (both directions), 0 misses", d, 2*rounds)
		}
	})

	t.Run("ignored port is not spliced", func(t *testing.T) {
		pod.StartProxy(t, "127.0.0.1:15090", 0)
		before := counters(t, objs)
		got := pod.Client(t, "127.0.0.1:15090", 0, 10, size)
		d := delta(before, counters(t, objs))
		if got.Rounds != 10 {
			t.Fatalf("client: %d rounds", got.Rounds)
		}
		if d["sockmap_inserted"] != 0 || d["sockmap_redirects"] != 0 || d["sockmap_redirect_misses"] != 0 {
			t.Errorf("counter deltas %v, want nothing inserted or redirected on an ignored port", d)
		}
	})

	t.Run("detached on close", func(t *testing.T) {
		closeAll()
		bpftest.CheckDetached(t, pod.Pod.CgroupPath, []ebpf.AttachType{ebpf.AttachCGroupSockOps}, progs, links)
		in0 := bpftest.InSegs(t, ns)
		if got := pod.Client(t, "127.0.0.1:15001", 0, 100, size); got.Rounds != 100 {
			t.Fatalf("after close: %d rounds", got.Rounds)
		}
		if n := bpftest.InSegs(t, ns) - in0; n < 100 {
			t.Errorf("after close: %d segments for 100 round trips, want the TCP path back", n)
		}
	})
}

// TestSteerWithSockmap runs the sockmap datapath's whole in-pod path: the
// app connects to a meshed address, connect4 sends it to the sidecar, the
// sidecar learns the original destination with SO_ORIGINAL_DST, and the
// bytes between them are redirected.
func TestSteerWithSockmap(t *testing.T) {
	pod := bpftest.NewPod(t)
	st, err := steer.Load(steer.Config{Proxy: netip.MustParseAddrPort("127.0.0.1:15001")})
	bpftest.RequireLoaded(t, "load steer", err)
	t.Cleanup(func() { st.Close() })
	sa, err := st.AttachCgroup(pod.Pod.CgroupPath)
	bpftest.RequireLoaded(t, "attach steer", err)
	t.Cleanup(func() { sa.Close() })
	sm, err := Load(Config{})
	bpftest.RequireLoaded(t, "load sockmap", err)
	t.Cleanup(func() { sm.Close() })
	ma, err := sm.AttachCgroup(pod.Pod.CgroupPath)
	bpftest.RequireLoaded(t, "attach sockmap", err)
	t.Cleanup(func() { ma.Close() })

	pod.StartProxy(t, "127.0.0.1:15001", bpftest.ProxyUID)
	in0 := bpftest.InSegs(t, pod.Pod.NetnsPath)
	got := pod.Client(t, "198.18.200.1:80", 0, rounds, size)
	segs := bpftest.InSegs(t, pod.Pod.NetnsPath) - in0
	if got.First != "ORIG 198.18.200.1:80" || got.Rounds != rounds {
		t.Fatalf("client: first line %q, %d rounds; want ORIG 198.18.200.1:80, %d", got.First, got.Rounds, rounds)
	}
	sc, err := st.Counters()
	if err != nil {
		t.Fatal(err)
	}
	mc, err := sm.Counters()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("steer %v; sockmap %v; pod InSegs %d for %d round trips", sc, mc, segs, rounds)
	if sc["steer_rewrites"] != 1 || sc["steer_getsockopt_hits"] != 1 {
		t.Errorf("steer counters %v, want 1 rewrite and 1 getsockopt hit", sc)
	}
	if want := uint64(2*rounds*size + len("ORIG 198.18.200.1:80\n")); mc["sockmap_bytes"] != want || mc["sockmap_inserted"] != 2 {
		t.Errorf("sockmap counters %v, want 2 inserted and %d bytes", mc, want)
	}
	if segs > rounds/10 {
		t.Errorf("%d segments for %d redirected round trips, want almost none", segs, rounds)
	}
}

func counters(t *testing.T, o *Objects) map[string]uint64 {
	t.Helper()
	c, err := o.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func delta(before, after map[string]uint64) map[string]uint64 {
	d := map[string]uint64{}
	for k, v := range after {
		d[k] = v - before[k]
	}
	return d
}

// TestSockmapPodsShareNoKeys runs two pods whose loopback connections have
// the very same 4-tuple (the same local port to the same port), at the
// same time. Each pod's sockets must stay in the sockhash and be spliced
// with their own peer: a key without the network namespace let the second
// pod's sockets replace the first's (whose bytes then took the TCP path),
// and could have spliced one pod's bytes into the other's socket.
func TestSockmapPodsShareNoKeys(t *testing.T) {
	a, b := bpftest.NewPod(t), bpftest.NewPod(t)
	objs, err := Load(Config{})
	bpftest.RequireLoaded(t, "load sockmap", err)
	t.Cleanup(func() { objs.Close() })
	for _, p := range []*bpftest.Pod{a, b} {
		att, err := objs.AttachCgroup(p.Pod.CgroupPath)
		bpftest.RequireLoaded(t, "attach sockmap", err)
		t.Cleanup(func() { att.Close() })
		p.StartProxy(t, "127.0.0.1:8081", 0)
	}
	before := counters(t, objs)
	t.Run("both pods", func(t *testing.T) {
		for i, p := range []*bpftest.Pod{a, b} {
			t.Run(fmt.Sprintf("pod %d", i), func(t *testing.T) {
				t.Parallel()
				// Both connections are up before either makes round trips.
				got := p.ClientFrom(t, "127.0.0.1:8081", "127.0.0.1:40001", 500*time.Millisecond, rounds, size)
				if got.First != "ORIG none" || got.Rounds != rounds {
					t.Errorf("client: first line %q, %d rounds", got.First, got.Rounds)
				}
			})
		}
	})
	d := delta(before, counters(t, objs))
	t.Logf("counter deltas: %v", d)
	if d["sockmap_inserted"] != 4 || d["sockmap_redirects"] < 2*2*rounds || d["sockmap_redirect_misses"] != 0 {
		t.Errorf("counter deltas %v, want 4 inserted and every message of both pods spliced (>= %d redirects, 0 misses)", d, 2*2*rounds)
	}
}

func TestMemlock(t *testing.T) {
	objs, err := Load(Config{})
	bpftest.RequireLoaded(t, "load sockmap", err)
	defer objs.Close()
	n, err := objs.MemlockBytes()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sockmap programs and maps: %d KiB", n>>10)
	if n <= 0 {
		t.Errorf("memlock %d bytes, want > 0", n)
	}
}
