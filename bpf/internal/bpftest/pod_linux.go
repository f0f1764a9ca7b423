package bpftest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshbench/meshbench/internal/cgroupfs"
	"github.com/meshbench/meshbench/internal/uids"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/harness/testbed/netns"
	"github.com/meshbench/meshbench/harness/testbed/testutil"
	"github.com/meshbench/meshbench/internal/nsutil"
)

// Pod is a throwaway one-pod cluster: a network namespace and a cgroup v2
// directory, and a copy of the test binary any uid can run in it.
type Pod struct {
	Cluster testbed.Cluster
	Pod     *testbed.Pod
	exe     string
}

// NewPod creates a one-node, one-pod cluster that the test's cleanup
// destroys and checks for leaks. It skips, saying why, when not root or
// when the host has no cgroup v2 hierarchy.
func NewPod(tb testing.TB) *Pod {
	tb.Helper()
	testutil.Privileged(tb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := netns.New(netns.Options{}).Create(ctx, testbed.Spec{
		RunID: testutil.NewRunID(tb),
		Nodes: 1,
		Pods:  []testbed.PodSpec{{Name: "app", Node: 0}},
	})
	if err != nil {
		tb.Fatalf("create cluster: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cl.Destroy(ctx); err != nil {
			tb.Errorf("destroy cluster: %v", err)
		}
	})
	p := &Pod{Cluster: cl, Pod: cl.Pod("app"), exe: executable(tb)}
	if p.Pod.CgroupPath == "" {
		tb.Skip("the host has no cgroup v2 hierarchy to attach cgroup BPF programs to")
	}
	return p
}

// executable copies the test binary to a directory every uid may enter, so
// helpers can run as the proxy's uid.
func executable(tb testing.TB) string {
	tb.Helper()
	self, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "bpftest-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		tb.Fatal(err)
	}
	defer src.Close()
	path := filepath.Join(dir, "helper")
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		tb.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		tb.Fatal(err)
	}
	return path
}

// syncBuffer is a bytes.Buffer safe for a process's output goroutine and
// the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// StartProxy starts the helper proxy in the pod (its netns and cgroup) as
// uid, listening on addr, and waits until it listens. The proxy answers
// each connection with "ORIG <SO_ORIGINAL_DST>" and then echoes.
func (p *Pod) StartProxy(tb testing.TB, addr string, uid uint32) *testbed.Process {
	tb.Helper()
	var out, errb syncBuffer
	proc, err := p.Cluster.Start(context.Background(), p.Pod, testbed.ProcessSpec{
		Name: "proxy", Role: "datapath",
		Args: []string{p.exe, modeProxy, addr},
		UID:  uid, GID: uid,
		Stdout: &out, Stderr: &errb,
	})
	if err != nil {
		tb.Fatalf("start proxy: %v", err)
	}
	tb.Cleanup(func() { proc.Stop(context.Background()) })
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "READY") {
		if proc.Exited() || time.Now().After(deadline) {
			tb.Fatalf("proxy did not start: %v; stderr: %s", proc.Err(), errb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return proc
}

// ClientResult is what a helper client saw.
type ClientResult struct {
	// First is the first line the server sent, without its newline.
	First string
	// Rounds is the number of echo round trips completed.
	Rounds int
}

// Client runs the helper client in the pod as uid: it connects to addr,
// reads one line, and makes rounds echo round trips of size bytes.
func (p *Pod) Client(tb testing.TB, addr string, uid uint32, rounds, size int) ClientResult {
	tb.Helper()
	return p.client(tb, []string{addr, strconv.Itoa(rounds), strconv.Itoa(size)}, uid)
}

// ClientFrom is Client from the local address local, holding the
// connection for hold after its first line before the round trips.
func (p *Pod) ClientFrom(tb testing.TB, addr, local string, hold time.Duration, rounds, size int) ClientResult {
	tb.Helper()
	return p.client(tb, []string{addr, strconv.Itoa(rounds), strconv.Itoa(size), local, strconv.Itoa(int(hold.Milliseconds()))}, 0)
}

func (p *Pod) client(tb testing.TB, args []string, uid uint32) ClientResult {
	tb.Helper()
	addr := args[0]
	var out, errb syncBuffer
	proc, err := p.Cluster.Start(context.Background(), p.Pod, testbed.ProcessSpec{
		Name: "client", Role: "client",
		Args: append([]string{p.exe, modeClient}, args...),
		// A race-enabled helper would otherwise sleep a second at exit.
		Env: []string{"GORACE=atexit_sleep_ms=0"},
		UID: uid, GID: uid,
		Stdout: &out, Stderr: &errb,
	})
	if err != nil {
		tb.Fatalf("start client: %v", err)
	}
	select {
	case <-proc.Done():
	case <-time.After(90 * time.Second):
		proc.Stop(context.Background())
		tb.Fatalf("client to %s did not finish; stderr: %s", addr, errb.String())
	}
	if err := proc.Err(); err != nil {
		tb.Fatalf("client to %s as uid %d: %v; stderr: %s", addr, uid, err, errb.String())
	}
	var r ClientResult
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "FIRST "); ok {
			r.First = v
		}
		if v, ok := strings.CutPrefix(sc.Text(), "ROUNDS "); ok {
			r.Rounds, _ = strconv.Atoi(v)
		}
	}
	return r
}

// Backend listens on addr in the pod's network namespace, from the test
// process (so outside the pod's cgroup), answers each connection with the
// line "BACKEND" and then echoes. The test's cleanup closes it.
func (p *Pod) Backend(tb testing.TB, addr string) {
	tb.Helper()
	l, err := nsutil.Listen(p.Pod.NetnsPath, "tcp4", addr)
	if err != nil {
		tb.Fatalf("backend listen %s: %v", addr, err)
	}
	var wg sync.WaitGroup
	tb.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				if _, err := io.WriteString(c, "BACKEND\n"); err == nil {
					Echo(c)
				}
			}()
		}
	}()
}

// InSegs returns the TCP InSegs counter of the network namespace at path.
func InSegs(tb testing.TB, path string) uint64 {
	tb.Helper()
	var v uint64
	err := nsutil.Do(path, func() error {
		b, err := os.ReadFile("/proc/thread-self/net/snmp")
		if err != nil {
			return err
		}
		v, err = snmpValue(string(b), "Tcp", "InSegs")
		return err
	})
	if err != nil {
		tb.Fatalf("read InSegs: %v", err)
	}
	return v
}

func snmpValue(snmp, proto, field string) (uint64, error) {
	var header []string
	for _, line := range strings.Split(snmp, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != proto+":" {
			continue
		}
		if header == nil {
			header = f
			continue
		}
		for i, name := range header {
			if name == field && i < len(f) {
				return strconv.ParseUint(f[i], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no %s %s in snmp", proto, field)
}

// RequireLoaded fails the test when err says loading or attaching failed:
// kernel 6.18 has every feature these programs use. A kernel older than
// 5.10 lacking one is skipped with the reason instead.
func RequireLoaded(tb testing.TB, what string, err error) {
	tb.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, ebpf.ErrNotSupported) && kernelOlderThan(5, 10) {
		tb.Skipf("%s: kernel too old: %v", what, err)
	}
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		tb.Fatalf("%s: %+v", what, ve)
	}
	tb.Fatalf("%s: %v", what, err)
}

func kernelOlderThan(major, minor int) bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	var ma, mi int
	fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &ma, &mi)
	return ma < major || (ma == major && mi < minor)
}

// CheckDetached fails the test if any BPF link in the kernel still runs
// one of progs or has one of linkIDs, if cgroupPath still has a program
// attached for any of types, or if progs are still loaded (after a short
// grace for the kernel's deferred free).
func CheckDetached(tb testing.TB, cgroupPath string, types []ebpf.AttachType, progs []ebpf.ProgramID, linkIDs []link.ID) {
	tb.Helper()
	ours := map[ebpf.ProgramID]bool{}
	for _, id := range progs {
		ours[id] = true
	}
	ourLinks := map[link.ID]bool{}
	for _, id := range linkIDs {
		ourLinks[id] = true
	}
	it := new(link.Iterator)
	for it.Next() {
		info, err := it.Link.Info()
		if err != nil {
			continue
		}
		if ours[info.Program] || ourLinks[it.ID] {
			tb.Errorf("BPF link %d (type %v, program %d) still exists", it.ID, info.Type, info.Program)
		}
	}
	if err := it.Err(); err != nil {
		tb.Errorf("iterate BPF links: %v", err)
	}
	if cgroupPath != "" {
		cg, err := os.Open(cgroupPath)
		if err != nil {
			tb.Fatalf("open cgroup: %v", err)
		}
		defer cg.Close()
		for _, typ := range types {
			res, err := link.QueryPrograms(link.QueryOptions{Target: int(cg.Fd()), Attach: typ})
			if err != nil {
				tb.Errorf("query %v programs of %s: %v", typ, cgroupPath, err)
				continue
			}
			if len(res.Programs) != 0 {
				tb.Errorf("cgroup %s still has %d %v programs attached", cgroupPath, len(res.Programs), typ)
			}
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, id := range progs {
		for {
			p, err := ebpf.NewProgramFromID(id)
			if errors.Is(err, os.ErrNotExist) {
				break
			}
			if err == nil {
				p.Close()
			}
			if time.Now().After(deadline) {
				tb.Errorf("program %d is still loaded", id)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// ProxyUID is the uid the helper proxy runs as.
const ProxyUID = uids.Proxy

// StartNodeProxy starts the helper proxy in the node's network namespace
// (and the run's node cgroup), listening on addr, as StartProxy does in
// the pod.
func (p *Pod) StartNodeProxy(tb testing.TB, addr string) *testbed.Process {
	tb.Helper()
	var out, errb syncBuffer
	proc, err := p.Cluster.StartOnNode(context.Background(), p.Cluster.Nodes()[p.Pod.NodeIndex], testbed.ProcessSpec{
		Name: "nodeproxy", Role: "datapath",
		Args:   []string{p.exe, modeProxy, addr},
		Stdout: &out, Stderr: &errb,
	})
	if err != nil {
		tb.Fatalf("start node proxy: %v", err)
	}
	tb.Cleanup(func() { proc.Stop(context.Background()) })
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "READY") {
		if proc.Exited() || time.Now().After(deadline) {
			tb.Fatalf("node proxy did not start: %v; stderr: %s", proc.Err(), errb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return proc
}

// CgroupOf returns the cgroup v2 directory of process pid.
func CgroupOf(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", err
	}
	var rel string
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "0::"); ok {
			rel = v
		}
	}
	if rel == "" {
		return "", fmt.Errorf("process %d has no cgroup v2 membership", pid)
	}
	roots, err := cgroupfs.Find()
	if err != nil {
		return "", err
	}
	if roots.V2 == "" {
		return "", errors.New("no cgroup2 mount")
	}
	return filepath.Join(roots.V2, rel), nil
}
