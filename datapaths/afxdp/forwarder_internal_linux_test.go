package afxdp

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/harness/metrics"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/harness/testbed/netns"
	"github.com/meshbench/meshbench/harness/testbed/testutil"
	"github.com/meshbench/meshbench/internal/nsutil"
)

// TestForwarderInProcess runs a forwarder in this process and checks that
// Close detaches every XDP program and closes every AF_XDP socket, without
// relying on the process exiting.
func TestForwarderInProcess(t *testing.T) {
	testutil.Privileged(t)
	if err := probeAFXDP(); err != nil {
		t.Skipf("no AF_XDP on this kernel: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := netns.New(netns.Options{}).Create(ctx, testbed.Spec{RunID: testutil.NewRunID(t), Nodes: 1,
		Pods: []testbed.PodSpec{{Name: "client", Node: 0}, {Name: "server", Node: 0}}})
	if err != nil {
		t.Fatalf("create cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Destroy(context.Background()); err != nil {
			t.Errorf("destroy: %v", err)
		}
	})
	client, server := c.Pod("client"), c.Pod("server")
	node := c.Nodes()[0]
	svc := &datapaths.Service{Name: "echo", Port: 7000, VIP: netip.MustParseAddr("198.19.128.30"), Backends: []*testbed.Pod{server}}
	cfgs, err := Configs(&datapaths.Env{Cluster: c, Services: []*datapaths.Service{svc}})
	if err != nil {
		t.Fatal(err)
	}
	before, err := metrics.ReadProcess(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var f *Forwarder
	if err := nsutil.Do(node.NetnsPath, func() (err error) {
		f, err = NewForwarder(cfgs[0], nil)
		return err
	}); err != nil {
		t.Fatalf("new forwarder: %v", err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = f.Close()
		}
	}()
	// The sockets' UMEM and rings are mapped and populated at open: the
	// forwarder's RSS (here this process's) holds them before any traffic,
	// so its measured PSS already counts them, per socket.
	after, err := metrics.ReadProcess(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var mapped int64
	for _, ss := range f.Stats().Sockets {
		if ss.MappedBytes < numFrames*frameSize {
			t.Errorf("socket %s maps %d bytes, less than its UMEM (%d)", ss.Interface, ss.MappedBytes, numFrames*frameSize)
		}
		mapped += ss.MappedBytes
	}
	t.Logf("%d sockets map %.1f MiB (%.2f MiB each); RSS grew by %.1f MiB, PSS by %.1f MiB; XDP program and maps %d KiB",
		len(f.outs), float64(mapped)/(1<<20), float64(mapped)/float64(len(f.outs))/(1<<20),
		float64(after.RSSBytes-before.RSSBytes)/(1<<20), float64(after.PSSBytes-before.PSSBytes)/(1<<20), f.Stats().BPFBytes>>10)
	if grew := after.PSSBytes - before.PSSBytes; grew < mapped-(4<<20) {
		t.Errorf("PSS grew by %d bytes when the sockets mapped %d: the UMEM is not resident", grew, mapped)
	}
	if f.Stats().BPFBytes <= 0 {
		t.Errorf("no BPF memory reported")
	}
	inodes := map[int]string{}
	for _, s := range f.outs {
		l, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(s.FD()))
		if err != nil || !strings.HasPrefix(l, "socket:") {
			t.Fatalf("fd %d of %s: %q %v", s.FD(), s.Interface(), l, err)
		}
		inodes[s.FD()] = l
	}
	if len(inodes) != 3 {
		t.Errorf("%d sockets, want 3 (two pods and the uplink)", len(inodes))
	}
	for _, p := range c.Pods() {
		if on, err := XDPAttached(node.NetnsPath, p.HostVeth); err != nil || !on {
			t.Errorf("xdp on %s: attached %v, %v", p.HostVeth, on, err)
		}
	}
	runCtx, stop := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- f.Run(runCtx) }()

	ln, err := nsutil.Listen(server.NetnsPath, "tcp", net.JoinHostPort(server.IP.String(), "7000"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = io.Copy(conn, conn)
	}()
	conn, err := nsutil.Dial(ctx, client.NetnsPath, "tcp", "198.19.128.30:7000")
	if err != nil {
		t.Fatalf("dial VIP: %v", err)
	}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	msg := bytes.Repeat([]byte("afxdp"), 1000) // several segments
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo through the VIP: %v", err)
	}
	conn.Close()
	st := f.Stats()
	if !st.Ready || st.NATHits == 0 || st.ReverseNATHits == 0 || st.XDP["xdp_redirected"] == 0 {
		t.Errorf("stats did not move: %+v", st)
	}

	stop()
	if err := <-runDone; err != nil {
		t.Errorf("run: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	closed = true
	if err := f.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	for _, p := range c.Pods() {
		if on, err := XDPAttached(node.NetnsPath, p.HostVeth); err != nil || on {
			t.Errorf("xdp on %s after close: attached %v, %v", p.HostVeth, on, err)
		}
	}
	for fd, was := range inodes {
		if l, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd)); err == nil && l == was {
			t.Errorf("AF_XDP socket %s still open as fd %d after close", was, fd)
		}
	}
}

func TestForwarderMainUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "no config", args: nil, want: "--config or --config-file is required"},
		{name: "both", args: []string{"--config", "{}", "--config-file", "x"}, want: "not both"},
		{name: "bad json", args: []string{"forwarder", "--config", "{"}, want: "parse forwarder config"},
		{name: "invalid", args: []string{"--config", `{"node":3}`}, want: "node 3 not among 0 nodes"},
		{name: "missing file", args: []string{"--config-file", "/nonexistent/afxdp.json"}, want: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := ForwarderMain(context.Background(), tt.args, &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}
