package chaos

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshbench/meshbench/harness/chaos/impl"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/meshbench/meshbench/harness/doctor"
	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/harness/testbed/netns"
	"github.com/meshbench/meshbench/harness/testbed/testutil"
	"github.com/meshbench/meshbench/internal/nsutil"
	"github.com/meshbench/meshbench/scenarios"
)

// The test binary doubles as a TCP echo server ("chaos-echo ADDR"), the
// workload that pod-kill kills and restarts.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "chaos-echo" {
		if err := echoServer(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(testutil.TestMainLeakCheck(m))
}

func echoServer(addr string) error {
	l, err := net.Listen("tcp4", addr)
	if err != nil {
		return err
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				fmt.Fprintf(c, "%d %s\n", os.Getpid(), sc.Text())
			}
		}()
	}
}

// bed is a 2-node cluster of 4 pods: a (n0-p0), b (n1-p0), c (n0-p1),
// d (n1-p1).
type bed struct {
	c           testbed.Cluster
	a, b, c2, d *testbed.Pod
	env         *Env
}

func newBed(t *testing.T) *bed {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	spec := testbed.Spec{RunID: testutil.NewRunID(t), Nodes: 2, Pods: []testbed.PodSpec{
		{Name: "n0-p0", Node: 0}, {Name: "n0-p1", Node: 0}, {Name: "n1-p0", Node: 1}, {Name: "n1-p1", Node: 1},
	}}
	c, err := netns.New(netns.Options{}).Create(ctx, spec)
	if err != nil {
		t.Fatalf("create cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Destroy(context.Background()); err != nil {
			t.Errorf("destroy: %v", err)
		}
	})
	b := &bed{c: c, a: c.Pod("n0-p0"), b: c.Pod("n1-p0"), c2: c.Pod("n0-p1"), d: c.Pod("n1-p1")}
	b.env = &Env{Cluster: c, Services: map[string][]*testbed.Pod{"echo": {b.b, b.d}}}
	return b
}

var counters = regexp.MustCompile(`\[[0-9]+:[0-9]+\]`)

// rootSnapshot is iptables-save and tc qdisc show of the root network
// namespace, without comments and counters.
func rootSnapshot(t *testing.T) string {
	t.Helper()
	return run(t, "iptables-save") + "\n----\n" + run(t, "tc", "qdisc", "show")
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
	var keep []string
	for _, l := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(l, "#") {
			keep = append(keep, counters.ReplaceAllString(l, "[]"))
		}
	}
	return strings.Join(keep, "\n")
}

// nsSnapshot is the iptables rules and qdiscs of a testbed namespace. (The
// filter table itself stays once iptables-nft created it; its rules are
// what must come back.)
func nsSnapshot(t *testing.T, path string) string {
	t.Helper()
	var rules []string
	for _, l := range strings.Split(run(t, "nsenter", "--net="+path, "iptables-save"), "\n") {
		if strings.HasPrefix(l, "-A") {
			rules = append(rules, l)
		}
	}
	return strings.Join(rules, "\n") + "\n----\n" + run(t, "nsenter", "--net="+path, "tc", "qdisc", "show") + "\n----\n" + tcxPrograms(t, path)
}

// tcxPrograms lists the tcx programs attached to every interface of the
// namespace at path.
func tcxPrograms(t *testing.T, path string) string {
	t.Helper()
	var out []string
	err := nsutil.Do(path, func() error {
		ifs, err := net.Interfaces()
		if err != nil {
			return err
		}
		for _, i := range ifs {
			for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
				r, err := link.QueryPrograms(link.QueryOptions{Target: i.Index, Attach: at})
				if err != nil {
					continue
				}
				for _, p := range r.Programs {
					out = append(out, fmt.Sprintf("%s %s prog %d", i.Name, at, p.ID))
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, "\n")
}

func (b *bed) snapshots(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range b.c.Pods() {
		out[p.Name] = nsSnapshot(t, p.NetnsPath)
	}
	for _, n := range b.c.Nodes() {
		out[n.Name] = nsSnapshot(t, n.NetnsPath)
	}
	return out
}

func (b *bed) checkClean(t *testing.T, before map[string]string) {
	t.Helper()
	after := b.snapshots(t)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s not restored:\nbefore:\n%s\nafter:\n%s", k, v, after[k])
		}
	}
}

// udpEcho echoes UDP datagrams on pod's address until the test ends.
func udpEcho(t *testing.T, pod *testbed.Pod, port int) string {
	t.Helper()
	var pc net.PacketConn
	addr := fmt.Sprintf("%s:%d", pod.IP, port)
	if err := nsutil.Do(pod.NetnsPath, func() (err error) { pc, err = net.ListenPacket("udp4", addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	return addr
}

// probe sends n numbered UDP probes from pod to addr, one per interval,
// and returns how many came back and their round-trip times.
func probe(t *testing.T, pod *testbed.Pod, addr string, n int, interval time.Duration) (int, []time.Duration) {
	t.Helper()
	var pc net.PacketConn
	if err := nsutil.Do(pod.NetnsPath, func() (err error) { pc, err = net.ListenPacket("udp4", pod.IP.String()+":0"); return err }); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	dst, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var rtts []time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64)
		for {
			m, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if m < 16 {
				continue
			}
			seq := binary.BigEndian.Uint64(buf)
			sent := time.Unix(0, int64(binary.BigEndian.Uint64(buf[8:])))
			mu.Lock()
			if !seen[seq] {
				seen[seq] = true
				rtts = append(rtts, time.Since(sent))
			}
			mu.Unlock()
		}
	}()
	msg := make([]byte, 16)
	for i := range n {
		binary.BigEndian.PutUint64(msg, uint64(i))
		binary.BigEndian.PutUint64(msg[8:], uint64(time.Now().UnixNano()))
		if _, err := pc.WriteTo(msg, dst); err != nil {
			t.Fatalf("send probe: %v", err)
		}
		time.Sleep(interval)
	}
	time.Sleep(300 * time.Millisecond)
	pc.Close()
	<-done
	mu.Lock()
	defer mu.Unlock()
	return len(seen), rtts
}

func medianDur(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// tcpOK reports whether a TCP connection from pod to addr opens within
// 300 ms.
func tcpOK(pod *testbed.Pod, addr string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	c, err := nsutil.Dial(ctx, pod.NetnsPath, "tcp4", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func tcpListen(t *testing.T, pod *testbed.Pod, port int) string {
	t.Helper()
	addr := fmt.Sprintf("%s:%d", pod.IP, port)
	l, err := nsutil.Listen(pod.NetnsPath, "tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	return addr
}

// apply injects entry's fault on b's cluster and returns a function that
// recovers it.
func (b *bed) apply(t *testing.T, e scenarios.ChaosEntry) (Fault, func()) {
	t.Helper()
	ctx := context.Background()
	tg, err := Resolve(e, b.env)
	if err != nil {
		t.Fatalf("resolve: %v", err)
	}
	f, err := New(e, Choose(e.Fault, b.env.Implementations[e.Fault], e.Target != nil), b.env)
	if err != nil {
		t.Fatalf("new: %v", err)
	}
	var before map[string]string
	network := e.Fault != "pod-kill" && e.Fault != "proxy-kill"
	if network {
		before = b.snapshots(t)
	}
	if err := f.Inject(ctx, tg); err != nil {
		f.Recover(ctx, tg)
		t.Fatalf("inject %s: %v", e.Fault, err)
	}
	if network && maps.Equal(before, b.snapshots(t)) {
		t.Errorf("%s (%s) changed no rule, qdisc or tc program that the snapshots see", e.Fault, f.Implementation())
	}
	if want := Choose(e.Fault, b.env.Implementations[e.Fault], e.Target != nil); f.Implementation() != want {
		t.Errorf("%s uses %s, want %s", e.Fault, f.Implementation(), want)
	}
	var once sync.Once
	rec := func() {
		once.Do(func() {
			if err := f.Recover(ctx, tg); err != nil {
				t.Errorf("recover %s: %v", e.Fault, err)
			}
			if err := f.Recover(ctx, tg); err != nil {
				t.Errorf("second recover %s: %v", e.Fault, err)
			}
		})
	}
	t.Cleanup(rec)
	return f, rec
}

func TestFaults(t *testing.T) {
	testutil.Privileged(t)
	for _, tool := range []string{"iptables", "iptables-save", "tc", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
	root := rootSnapshot(t)
	t.Cleanup(func() {
		if after := rootSnapshot(t); after != root {
			t.Errorf("root namespace changed:\nbefore:\n%s\nafter:\n%s", root, after)
		}
	})
	b := newBed(t)
	echo := udpEcho(t, b.b, 7000)

	for _, impl := range []string{impl.Statistic, impl.TCBPF} {
		b.env.Implementations = map[string]string{"loss": impl, "partition": impl}
		t.Run(impl+" loss from", func(t *testing.T) {
			before := b.snapshots(t)
			f, rec := b.apply(t, scenarios.ChaosEntry{Fault: "loss", Selector: sel("n1-p0"), Direction: "from", Loss: &scenarios.LossSpec{Loss: "10"}})
			got, _ := probe(t, b.a, echo, 1000, time.Millisecond)
			act := mustBeActive(t, f)
			rec()
			if n := act.Counters["rule_packets"] + act.Counters["dropped"]; n != int64(1000-got) {
				t.Errorf("the fault counted %d drops, but %d probes were lost", n, 1000-got)
			}
			lost := 100 * float64(1000-got) / 1000
			t.Logf("10%% loss (%s) on n1-p0's receiving side: %.1f%% of 1000 probes lost", impl, lost)
			if lost < 7 || lost > 13 {
				t.Errorf("lost %.1f%% of probes, want 7..13%%", lost)
			}
			b.checkClean(t, before)
			if got, _ := probe(t, b.a, echo, 200, 0); got != 200 {
				t.Errorf("after recovery %d of 200 probes came back", got)
			}
		})

		t.Run(impl+" loss to", func(t *testing.T) {
			before := b.snapshots(t)
			// Packets a sends are dropped where they arrive (b's INPUT).
			f, rec := b.apply(t, scenarios.ChaosEntry{Fault: "loss", Selector: sel("n0-p0"), Loss: &scenarios.LossSpec{Loss: "10"}})
			got, _ := probe(t, b.a, echo, 1000, time.Millisecond)
			act := mustBeActive(t, f)
			rec()
			if n := act.Counters["rule_packets"] + act.Counters["dropped"]; n != int64(1000-got) {
				t.Errorf("the fault counted %d drops, but %d probes were lost", n, 1000-got)
			}
			lost := 100 * float64(1000-got) / 1000
			t.Logf("10%% loss (%s) of n0-p0's sent packets: %.1f%% of 1000 probes lost", impl, lost)
			if lost < 7 || lost > 13 {
				t.Errorf("lost %.1f%% of probes, want 7..13%%", lost)
			}
			b.checkClean(t, before)
		})

		t.Run(impl+" loss to the node", func(t *testing.T) {
			// What a pod sends to its own node (a node proxy's listener)
			// is lost too.
			n1 := b.c.Nodes()[1]
			nodeEcho := udpEcho(t, &testbed.Pod{Name: n1.Name, IP: n1.Gateway, NetnsPath: n1.NetnsPath}, 7002)
			f, rec := b.apply(t, scenarios.ChaosEntry{Fault: "loss", Selector: sel("n1-p0"), Loss: &scenarios.LossSpec{Loss: "100"}})
			got, _ := probe(t, b.b, nodeEcho, 50, time.Millisecond)
			act := mustBeActive(t, f)
			rec()
			if got != 0 {
				t.Errorf("%d of 50 probes from n1-p0 to its node came back through 100%% loss", got)
			}
			if n := act.Counters["rule_packets"] + act.Counters["dropped"]; n != 50 {
				t.Errorf("the fault counted %d drops of 50 probes", n)
			}
		})

		t.Run(impl+" inactive", func(t *testing.T) {
			// Nothing reaches n0-p1: its loss drops nothing and says so.
			f, rec := b.apply(t, scenarios.ChaosEntry{Fault: "loss", Selector: sel("n0-p1"), Direction: "from", Loss: &scenarios.LossSpec{Loss: "50"}})
			probe(t, b.a, echo, 50, time.Millisecond)
			act, err := f.Activity(context.Background())
			rec()
			if err != nil || act.Active || !strings.Contains(act.Detail, "matched no packet") {
				t.Errorf("activity %+v, %v; want inactive", act, err)
			}
		})
	}
	b.env.Implementations = nil

	t.Run("delay", func(t *testing.T) {
		before := b.snapshots(t)
		_, base := probe(t, b.a, echo, 50, 5*time.Millisecond)
		f, rec := b.apply(t, scenarios.ChaosEntry{Fault: "delay", Selector: sel("n0-p0"), Delay: &scenarios.DelaySpec{Latency: scenarios.Duration(20 * time.Millisecond)}})
		got, slow := probe(t, b.a, echo, 50, 5*time.Millisecond)
		if act := mustBeActive(t, f); act.Counters["queued"] < 50 {
			t.Errorf("NFQUEUE held %d packets, want at least the 50 probes", act.Counters["queued"])
		}
		rec()
		added := medianDur(slow) - medianDur(base)
		t.Logf("20 ms delay (%s): median RTT %v -> %v, added %.2f ms (%d of 50 probes back)", f.Implementation(), medianDur(base), medianDur(slow), float64(added)/1e6, got)
		if added < 19*time.Millisecond || added > 23*time.Millisecond {
			t.Errorf("added %v, want 19..23 ms", added)
		}
		if got != 50 {
			t.Errorf("%d of 50 delayed probes came back", got)
		}
		b.checkClean(t, before)
		_, after := probe(t, b.a, echo, 20, time.Millisecond)
		if m := medianDur(after); m > 5*time.Millisecond {
			t.Errorf("RTT after recovery %v", m)
		}
	})

	t.Run("delay to a target only", func(t *testing.T) {
		echoD := udpEcho(t, b.d, 7001)
		f, rec := b.apply(t, scenarios.ChaosEntry{Fault: "delay", Selector: sel("n0-p0"), Target: &scenarios.ChaosTarget{Selector: sel("n1-p0")},
			Delay: &scenarios.DelaySpec{Latency: scenarios.Duration(20 * time.Millisecond)}})
		_, toB := probe(t, b.a, echo, 20, 5*time.Millisecond)
		_, toD := probe(t, b.a, echoD, 20, 5*time.Millisecond)
		mustBeActive(t, f)
		rec()
		if m := medianDur(toB); m < 19*time.Millisecond {
			t.Errorf("RTT to the target %v, want >= 19 ms", m)
		}
		if m := medianDur(toD); m > 10*time.Millisecond {
			t.Errorf("RTT to another pod %v, want no delay", m)
		}
	})

	for _, impl := range []string{impl.IptablesDrop, impl.TCBPF} {
		b.env.Implementations = map[string]string{"partition": impl}
		t.Run(impl+" partition", func(t *testing.T) {
			before := b.snapshots(t)
			toB := tcpListen(t, b.b, 7100)
			toA := tcpListen(t, b.a, 7100)
			toD := tcpListen(t, b.d, 7100)
			if !tcpOK(b.a, toB) || !tcpOK(b.b, toA) {
				t.Fatal("no connectivity before the partition")
			}
			f, rec := b.apply(t, scenarios.ChaosEntry{Fault: "partition", Selector: sel("n0-p0"), Target: &scenarios.ChaosTarget{Selector: sel("n1-p0")}, Direction: "both"})
			if tcpOK(b.a, toB) {
				t.Error("a -> b connects across the partition")
			}
			if tcpOK(b.b, toA) {
				t.Error("b -> a connects across the partition")
			}
			if !tcpOK(b.a, toD) {
				t.Error("a -> d (outside the partition) fails")
			}
			mustBeActive(t, f)
			rec()
			if !tcpOK(b.a, toB) || !tcpOK(b.b, toA) {
				t.Error("no connectivity after the partition is recovered")
			}
			b.checkClean(t, before)
		})

	}
	b.env.Implementations = nil

	t.Run("bandwidth", func(t *testing.T) {
		before := b.snapshots(t)
		addr := tcpListen(t, b.b, 7200)
		f, rec := b.apply(t, scenarios.ChaosEntry{Fault: "bandwidth", Selector: sel("n0-p0"), Bandwidth: &scenarios.BandwidthSpec{Rate: "4mbps"}})
		mbps := throughput(t, b.a, addr, time.Second)
		mustBeActive(t, f)
		rec()
		t.Logf("4mbps TBF: measured %.2f Mbit/s", mbps)
		if mbps > 8 || mbps < 1 {
			t.Errorf("throughput %.2f Mbit/s under a 4mbps limit", mbps)
		}
		b.checkClean(t, before)
		if free := throughput(t, b.a, addr, 200*time.Millisecond); free < 40 {
			t.Errorf("throughput after recovery %.2f Mbit/s", free)
		}
	})

	t.Run("bandwidth from", func(t *testing.T) {
		before := b.snapshots(t)
		addr := tcpListen(t, b.b, 7201)
		f, rec := b.apply(t, scenarios.ChaosEntry{Fault: "bandwidth", Selector: sel("n1-p0"), Direction: "from", Bandwidth: &scenarios.BandwidthSpec{Rate: "4mbps"}})
		// Two seconds, and a low floor: drops at the node-side bucket can
		// cost the sender retransmission timeouts (200 ms, then doubling).
		// Runs after the subtest above measured 0.9 Mbit/s in one second
		// (once in 14) and 1.2–1.4 in two (2 of 6), against 3.8 alone.
		// The ceiling is what shows the limit; the floor shows traffic
		// still flows.
		mbps := throughput(t, b.a, addr, 2*time.Second)
		mustBeActive(t, f)
		rec()
		t.Logf("4mbps TBF toward n1-p0 (node side): measured %.2f Mbit/s", mbps)
		if mbps > 8 || mbps < 0.5 {
			t.Errorf("throughput into n1-p0 %.2f Mbit/s under a 4mbps limit", mbps)
		}
		b.checkClean(t, before)
	})

	t.Run("bandwidth above the traffic is inactive", func(t *testing.T) {
		// From n0-p1, which no earlier test loaded: a few probes never
		// empty a 10 Gbit/s bucket.
		f, rec := b.apply(t, scenarios.ChaosEntry{Fault: "bandwidth", Selector: sel("n0-p1"), Bandwidth: &scenarios.BandwidthSpec{Rate: "10gbps"}})
		got, _ := probe(t, b.c2, echo, 20, time.Millisecond)
		act, err := f.Activity(context.Background())
		rec()
		if err != nil || act.Active || act.Counters["qdisc_packets"] < int64(got) {
			t.Errorf("activity %+v, %v; want inactive, with the %d probes counted as passed", act, err, got)
		}
	})

	t.Run("pod-kill timeline", func(t *testing.T) { podKillTimeline(t, b) })
	t.Run("pod-kill measured", func(t *testing.T) { podKillMeasured(t, b) })
	t.Run("proxy-kill", func(t *testing.T) { proxyKillTest(t, b) })
	t.Run("stop after cancel", func(t *testing.T) { stopAfterCancel(t, b) })
}

// mustBeActive reads f's activity and fails the test unless it acted.
func mustBeActive(t *testing.T, f Fault) results.FaultActivity {
	t.Helper()
	act, err := f.Activity(context.Background())
	if err != nil {
		t.Fatalf("%s activity: %v", f.Kind(), err)
	}
	t.Logf("%s (%s) activity: %s %v", f.Kind(), f.Implementation(), act.Detail, act.Counters)
	if !act.Active {
		t.Errorf("%s (%s) inactive: %s", f.Kind(), f.Implementation(), act.Detail)
	}
	return act
}

// throughput writes from pod to addr for d and returns Mbit/s.
func throughput(t *testing.T, pod *testbed.Pod, addr string, d time.Duration) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := nsutil.Dial(ctx, pod.NetnsPath, "tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 16<<10)
	start := time.Now()
	c.SetWriteDeadline(start.Add(d))
	var n int64
	for time.Since(start) < d {
		m, err := c.Write(buf)
		n += int64(m)
		if err != nil {
			break
		}
	}
	// Bytes still in the socket buffer have not crossed the limit: count
	// only what was acknowledged is not possible portably, so subtract the
	// send queue reported by the kernel.
	return float64(n-unsent(c)) * 8 / time.Since(start).Seconds() / 1e6
}

func unsent(c net.Conn) int64 {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return 0
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return 0
	}
	var q int
	raw.Control(func(fd uintptr) { q, _ = ioctlOutq(int(fd)) })
	return int64(q)
}

func podKillTimeline(t *testing.T, b *bed) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("%s:9000", b.b.IP)
	var starts atomic.Int32
	start := func(ctx context.Context, pod *testbed.Pod) error {
		starts.Add(1)
		return startEcho(ctx, b, exe, pod, addr)
	}
	if err := start(context.Background(), b.b); err != nil {
		t.Fatal(err)
	}
	pid1 := echoPID(t, b.a, addr)
	env := *b.env
	env.StartWorkload = start
	// A readiness probe every 200 ms; record every verdict, and whether
	// the echo served when it came.
	type verdict struct {
		ready, served bool
		at            time.Time
	}
	var mu sync.Mutex
	var verdicts []verdict
	env.Probe = func(ctx context.Context, pod *testbed.Pod) error {
		if !tcpOK(pod, addr) {
			return errors.New("refused")
		}
		return nil
	}
	env.Readiness = func(*testbed.Pod) scenarios.Probe {
		return scenarios.Probe{Period: scenarios.Duration(200 * time.Millisecond), Timeout: scenarios.Duration(100 * time.Millisecond), FailureThreshold: 1, SuccessThreshold: 1}
	}
	env.SetReady = func(ctx context.Context, pod *testbed.Pod, ready bool) error {
		served := tcpOK(b.a, addr)
		mu.Lock()
		defer mu.Unlock()
		verdicts = append(verdicts, verdict{ready, served, time.Now()})
		return nil
	}
	tl, err := NewTimeline([]scenarios.ChaosEntry{{Name: "kill-b", Fault: "pod-kill", At: scenarios.Duration(100 * time.Millisecond), Duration: scenarios.Duration(700 * time.Millisecond), Selector: scenarios.ChaosSelector{Services: []string{"echo"}}, Mode: "one"}})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	done := tl.Run(context.Background(), env, t0)
	time.Sleep(400 * time.Millisecond)
	if tcpOK(b.a, addr) {
		t.Error("the killed pod still serves during the fault")
	}
	<-done
	recs, err := tl.Stop(context.Background())
	if err != nil {
		t.Fatalf("stop: %v", err)
	}
	pid2 := echoPID(t, b.a, addr)
	if pid2 == pid1 {
		t.Errorf("echo pid %s unchanged: not restarted", pid1)
	}
	r := recs[0]
	t.Logf("pod-kill record: %+v", r)
	if r.Error != "" || r.Fault != "pod-kill" || r.Implementation != impl.Signal || !slices.Equal(r.Pods, []string{"n1-p0"}) ||
		r.StartS < 0.1 || r.EndS < 0.8 || r.EndS < r.StartS {
		t.Errorf("record %+v", r)
	}
	if starts.Load() != 2 {
		t.Errorf("StartWorkload ran %d times, want 2 (initial + restart)", starts.Load())
	}
	// Crash first: the probe took the pod out only once it had stopped
	// serving, within a period (and its timeout) of the kill, and put it
	// back once it served again.
	mu.Lock()
	t.Logf("readiness verdicts: %+v", verdicts)
	if len(verdicts) != 2 || verdicts[0].ready || verdicts[0].served || !verdicts[1].ready || !verdicts[1].served {
		t.Errorf("verdicts %+v, want not ready (while down), then ready (once serving)", verdicts)
	}
	mu.Unlock()
	if rd := r.Readiness; rd == nil || rd.NotReadyS < 0 || rd.NotReadyS > 0.35 || rd.ReadyS < 0 || rd.ReadyS > 0.35 || rd.PeriodS != 0.2 {
		t.Errorf("readiness record %+v, want not ready and ready again within a period (0.2 s) and a timeout", rd)
	}
	if a := r.Activity; a == nil || !a.Active || len(a.KilledPIDs) != 1 || strconv.Itoa(a.KilledPIDs[0]) != pid1 || a.StayedDown == nil || !*a.StayedDown {
		t.Errorf("activity %+v, want pid %s killed and down until the restart", a, pid1)
	}
	// A second Stop is harmless and returns the same records.
	if again, err := tl.Stop(context.Background()); err != nil || len(again) != 1 || again[0].EndS != r.EndS {
		t.Errorf("second Stop: %v %+v", err, again)
	}
}

// startEcho starts the echo workload in pod and waits until a serves it.
func startEcho(ctx context.Context, b *bed, exe string, pod *testbed.Pod, addr string) error {
	if _, err := b.c.Start(ctx, pod, testbed.ProcessSpec{Name: "echo", Role: results.RoleServer, Args: []string{exe, "chaos-echo", addr}}); err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Second)
	for !tcpOK(b.a, addr) {
		if time.Now().After(deadline) {
			return fmt.Errorf("echo in %s not serving after 5s", pod.Name)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// loadWindows sends one request (connect, line, answer) from pod to addr
// every 5 ms for d and summarises them in windows of width.
func loadWindows(pod *testbed.Pod, addr string, start time.Time, d, width time.Duration) []results.Window {
	type req struct {
		at  time.Duration
		ok  bool
		lat time.Duration
	}
	var reqs []req
	for next := start; time.Since(start) < d; next = next.Add(5 * time.Millisecond) {
		time.Sleep(time.Until(next))
		t0 := time.Now()
		ok := func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			c, err := nsutil.Dial(ctx, pod.NetnsPath, "tcp4", addr)
			if err != nil {
				return false
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(200 * time.Millisecond))
			fmt.Fprintln(c, "x")
			_, err = bufio.NewReader(c).ReadString('\n')
			return err == nil
		}()
		reqs = append(reqs, req{t0.Sub(start), ok, time.Since(next)})
	}
	n := int(d / width)
	windows := make([]results.Window, n)
	lats := make([][]time.Duration, n)
	for i := range windows {
		windows[i].StartS = (time.Duration(i) * width).Seconds()
	}
	for _, r := range reqs {
		i := int(r.at / width)
		if i >= n {
			continue
		}
		windows[i].Requests++
		if r.ok {
			windows[i].Successes++
		}
		lats[i] = append(lats[i], r.lat)
	}
	for i := range windows {
		w := &windows[i]
		if w.Requests == 0 {
			continue
		}
		w.SuccessRatio = float64(w.Successes) / float64(w.Requests)
		slices.Sort(lats[i])
		w.P50US = float64(lats[i][len(lats[i])/2].Microseconds())
		w.P99US = float64(lats[i][len(lats[i])*99/100].Microseconds())
	}
	return windows
}

// podKillMeasured kills the echo behind a load and checks that Analyze
// finds the errors and the recovery in the load's windows.
func podKillMeasured(t *testing.T, b *bed) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("%s:9001", b.d.IP)
	if err := startEcho(context.Background(), b, exe, b.d, addr); err != nil {
		t.Fatal(err)
	}
	env := *b.env
	env.StartWorkload = func(ctx context.Context, pod *testbed.Pod) error { return startEcho(ctx, b, exe, pod, addr) }
	tl, err := NewTimeline([]scenarios.ChaosEntry{{Name: "kill-d", Fault: "pod-kill", At: scenarios.Duration(time.Second), Duration: scenarios.Duration(500 * time.Millisecond), Selector: sel("n1-p1")}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	tl.Run(context.Background(), env, start)
	windows := loadWindows(b.a, addr, start, 3*time.Second, 250*time.Millisecond)
	recs, err := tl.Stop(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	f := Analyze(windows, recs)[0]
	for _, w := range windows {
		t.Logf("window %.2fs: %d requests, success %.2f, p50 %.0f us, p99 %.0f us, faults %v", w.StartS, w.Requests, w.SuccessRatio, w.P50US, w.P99US, Active(w.StartS, 0.25, recs))
	}
	t.Logf("fault %s: start %.3fs end %.3fs errors %d detect %.2fs recover %.2fs", f.Name, f.StartS, f.EndS, f.Errors, f.DetectS, f.RecoverS)
	if f.Errors == 0 || f.DetectS < 0 || f.RecoverS < 0 {
		t.Errorf("Analyze found errors %d, detect %v, recover %v: want errors, a detection and a recovery", f.Errors, f.DetectS, f.RecoverS)
	}
	for _, w := range windows {
		if w.StartS+0.25 <= f.StartS && w.Successes != w.Requests {
			t.Errorf("window %.2fs before the fault has errors", w.StartS)
		}
	}
}

// echoPID asks the echo server at addr for its pid.
func echoPID(t *testing.T, from *testbed.Pod, addr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := nsutil.Dial(ctx, from.NetnsPath, "tcp4", addr)
	if err != nil {
		t.Fatalf("echo not serving: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintln(c, "hi")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("echo: %v", err)
	}
	pid, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
	if rest != "hi" {
		t.Fatalf("echo answered %q", line)
	}
	return pid
}

func proxyKillTest(t *testing.T, b *bed) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// A dummy sidecar in d and a dummy node proxy on node 1.
	side, err := b.c.Start(ctx, b.d, testbed.ProcessSpec{Name: "sidecar", Role: results.RoleDatapath, Args: []string{exe, "chaos-echo", fmt.Sprintf("%s:15001", b.d.IP)}})
	if err != nil {
		t.Fatal(err)
	}
	nodeProxy, err := b.c.StartOnNode(ctx, b.c.Nodes()[1], testbed.ProcessSpec{Name: "node-proxy", Role: results.RoleDatapath, Args: []string{exe, "chaos-echo", "127.0.0.1:15001"}})
	if err != nil {
		t.Fatal(err)
	}
	other, err := b.c.Start(ctx, b.c2, testbed.ProcessSpec{Name: "sidecar", Role: results.RoleDatapath, Args: []string{exe, "chaos-echo", fmt.Sprintf("%s:15001", b.c2.IP)}})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Stop(ctx)
	var restarted []string
	b.env.RestartDatapath = func(ctx context.Context, p *testbed.Process) error {
		restarted = append(restarted, p.Name)
		return nil
	}
	defer func() { b.env.RestartDatapath = nil }()
	_, rec := b.apply(t, scenarios.ChaosEntry{Fault: "proxy-kill", Selector: scenarios.ChaosSelector{Nodes: []string{"n1"}}})
	if !side.Exited() || !nodeProxy.Exited() {
		t.Errorf("sidecar exited %v, node proxy exited %v, want both killed", side.Exited(), nodeProxy.Exited())
	}
	if other.Exited() {
		t.Error("a sidecar on another node was killed")
	}
	rec()
	slices.Sort(restarted)
	if !slices.Equal(restarted, []string{"node-proxy", "sidecar"}) {
		t.Errorf("restarted %v", restarted)
	}
	// No datapath process: the fault is inactive and says why.
	tg, _ := Resolve(scenarios.ChaosEntry{Fault: "proxy-kill", Selector: sel("n0-p0")}, b.env)
	f := newProxyKill(b.env)
	if err := f.Inject(ctx, tg); err != nil {
		t.Errorf("proxy-kill without a datapath process: %v", err)
	}
	if a, err := f.Activity(ctx); err != nil || a.Active || !strings.Contains(a.Detail, "nothing to kill") {
		t.Errorf("activity %+v, %v; want inactive, nothing to kill", a, err)
	}
}

func stopAfterCancel(t *testing.T, b *bed) {
	before := b.snapshots(t)
	hour := scenarios.Duration(time.Hour)
	// No traffic flows: the faults are allowed to do nothing.
	tl, err := NewTimeline([]scenarios.ChaosEntry{
		{Fault: "delay", Duration: hour, Selector: sel("n0-p0"), Delay: &scenarios.DelaySpec{Latency: scenarios.Duration(5 * time.Millisecond)}, AllowInactive: true},
		{Fault: "loss", Duration: hour, Selector: sel("n1-p0"), Direction: "both", Loss: &scenarios.LossSpec{Loss: "50"}, AllowInactive: true},
		{Fault: "partition", Duration: hour, Selector: sel("n0-p1"), Target: &scenarios.ChaosTarget{Selector: scenarios.ChaosSelector{Nodes: []string{"n1"}}}, AllowInactive: true},
		{Fault: "bandwidth", Duration: hour, Selector: sel("n1-p1"), Direction: "both", Bandwidth: &scenarios.BandwidthSpec{Rate: "1mbps"}, AllowInactive: true},
		{Fault: "loss", At: hour, Duration: hour, Selector: sel("n1-p1"), Loss: &scenarios.LossSpec{Loss: "50"}},
		{Name: "idle", Fault: "delay", Duration: hour, Selector: sel("n0-p1"), Direction: "from", Delay: &scenarios.DelaySpec{Latency: scenarios.Duration(time.Millisecond)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	env := *b.env
	env.Implementations = map[string]string{"loss": impl.TCBPF}
	tl.Run(ctx, env, time.Now())
	// Wait until the four immediate faults are in place.
	deadline := time.Now().Add(10 * time.Second)
	for {
		now := b.snapshots(t)
		changed := 0
		for _, p := range []string{"n0-p0", "n1-p0", "n0-p1", "n1-p1"} {
			if now[p] != before[p] {
				changed++
			}
		}
		if changed == 4 && now["n1"] != before["n1"] {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			tl.Stop(context.Background())
			t.Fatal("faults not injected after 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	recs, err := tl.Stop(ctx) // ctx is cancelled: Stop must still clean up
	// Only the idle delay, inactive and not allowed to be, is an error.
	if err == nil || !strings.Contains(err.Error(), "chaos idle: inactive: its NFQUEUE rules matched no packet") || strings.Count(err.Error(), "chaos ") != 1 {
		t.Errorf("stop: %v, want the idle delay's inactivity alone", err)
	}
	b.checkClean(t, before)
	for i, r := range recs[:4] {
		if r.Error != "" || r.StartS < 0 || r.EndS < r.StartS || r.Activity == nil || !r.AllowInactive {
			t.Errorf("record %d: %+v, want recovered, with its activity read", i, r)
		}
	}
	if r := recs[4]; r.StartS != -1 || !strings.Contains(r.Error, "not injected") {
		t.Errorf("pending fault record: %+v", r)
	}
}

func TestDoctorImplementations(t *testing.T) {
	testutil.Privileged(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r := doctor.Check(ctx, doctor.Options{})
	impl := FromDoctor(r)
	for _, f := range scenarios.Faults {
		q, _ := r.Requirement(doctor.KindFault, f)
		got := Choose(f, impl[f], false)
		t.Logf("%s: doctor %q (ready %v) -> chaos uses %q", f, q.Using, q.Ready, got)
		if q.Ready && got == "" {
			t.Errorf("%s: no implementation", f)
		}
		// Every implementation doctor may choose is ours, but htb (doctor
		// picks it only on hosts without tbf).
		if q.Ready && q.Using != "htb" && got != q.Using {
			t.Errorf("%s: doctor says %s, chaos uses %s", f, q.Using, got)
		}
	}
}

// remoteHost stands for a node agent: a Host that is not this machine.
type remoteHost struct{ nsutil.Host }

// TestLocalOnlyRefusedOnAgents: tc-bpf acts from the harness's own
// process, so on a pod reached through an agent it refuses before
// touching anything, saying why; nfqueue delay there needs a cluster to
// start its delay-queue process with, and says so without one.
func TestLocalOnlyRefusedOnAgents(t *testing.T) {
	pod := &testbed.Pod{Name: "n1-p0", NetnsPath: "/proc/1/ns/net", Host: remoteHost{}}
	d, err := newDelay(impl.NFQueue, scenarios.DelaySpec{Latency: scenarios.Duration(time.Millisecond)}, "t", &Env{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Inject(context.Background(), Target{Pods: []*testbed.Pod{pod}, Direction: "to"}); err == nil || !strings.Contains(err.Error(), "no cluster or command to start the queue with") {
		t.Errorf("nfqueue delay on an agent's pod without a cluster: %v", err)
	}
	var drops tcDrops
	if err := drops.add(pod, 0, 0.5, nil); err == nil || !strings.Contains(err.Error(), "needs the pod on this machine") {
		t.Errorf("tc-bpf on an agent's pod: %v", err)
	}
}

// TestQueueOutput: a delay-queue's output may arrive in pieces; READY and
// the last HELD count are read from whole lines.
func TestQueueOutput(t *testing.T) {
	o := newQueueOutput()
	for _, part := range []string{"REA", "DY\nHELD 1", "2\nHELD x\n", "HELD 40\nHE"} {
		o.Write([]byte(part))
	}
	select {
	case <-o.ready:
	default:
		t.Error("READY not seen")
	}
	if got := o.heldCount(); got != 40 {
		t.Errorf("held %d, want 40", got)
	}
}
