package fake

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshbench/meshbench/harness/testbed"
)

func spec() testbed.Spec {
	return testbed.Spec{RunID: "c0ffee", Nodes: 2, Pods: []testbed.PodSpec{
		{Name: "client", Node: 0}, {Name: "n1-p0", Node: 1}, {Name: "n0-p1", Node: 0}, {Name: "n1-p1", Node: 1},
	}}
}

func TestCreateHandles(t *testing.T) {
	var p Provider
	c, err := p.Create(context.Background(), spec())
	if err != nil {
		t.Fatal(err)
	}
	bench := netip.MustParsePrefix("198.18.0.0/15")
	for _, n := range c.Nodes() {
		if !bench.Contains(n.IP) || !bench.Contains(n.Gateway) || !bench.Contains(n.PodCIDR.Addr()) || n.NetnsPath == "" {
			t.Errorf("node %+v: want addresses in %s and a namespace path", n, bench)
		}
	}
	seen := map[netip.Addr]bool{}
	for _, pod := range c.Pods() {
		nd := c.Nodes()[pod.NodeIndex]
		if !nd.PodCIDR.Contains(pod.IP) || seen[pod.IP] || pod.Node != nd.Name || pod.MAC == "" || pod.HostVeth == "" {
			t.Errorf("pod %+v on node %s", pod, nd.Name)
		}
		seen[pod.IP] = true
		if c.Pod(pod.Name) != pod {
			t.Errorf("Pod(%q) is not the handle Pods returned", pod.Name)
		}
	}
	if got := c.Pod("n0-p1").IP; got != netip.MustParseAddr("198.18.0.11") {
		t.Errorf("n0-p1 at %s, want 198.18.0.11 (pod 1 of node 0)", got)
	}
	if len(c.Namespaces()) != 1+2+4 {
		t.Errorf("namespaces %v, want fabric, 2 nodes, 4 pods", c.Namespaces())
	}
	if len(p.Clusters()) != 1 || p.Clusters()[0].Spec().RunID != "c0ffee" {
		t.Errorf("clusters not recorded: %v", p.Clusters())
	}
}

func TestCreateErrors(t *testing.T) {
	injected := errors.New("injected")
	p := Provider{FailCreate: func(s testbed.Spec) error { return injected }}
	if _, err := p.Create(context.Background(), spec()); !errors.Is(err, injected) {
		t.Errorf("FailCreate: err %v", err)
	}
	if len(p.Clusters()) != 0 {
		t.Error("a failed Create recorded a cluster")
	}
	bad := spec()
	bad.Pods = append(bad.Pods, testbed.PodSpec{Name: "client", Node: 1})
	if _, err := new(Provider).Create(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate pod: err %v", err)
	}
}

func TestProcesses(t *testing.T) {
	var (
		mu     sync.Mutex
		events []string
	)
	injected := errors.New("no such program")
	p := Provider{
		Programs: map[string]Program{
			"hello": func(ctx context.Context, p *Proc) error {
				_, err := io.WriteString(p.Stdout, "hello "+p.Pod.Name+"\n")
				return err
			},
			"stubborn": func(ctx context.Context, p *Proc) error { <-ctx.Done(); return nil },
		},
		FailStart: func(s testbed.ProcessSpec, pod *testbed.Pod, node *testbed.Node) error {
			if s.Name == "broken" {
				return injected
			}
			return nil
		},
		Trace: func(ev string) { mu.Lock(); events = append(events, ev); mu.Unlock() },
	}
	ctx := context.Background()
	tc, err := p.Create(ctx, spec())
	if err != nil {
		t.Fatal(err)
	}
	c := tc.(*Cluster)
	var out strings.Builder
	hello, err := c.Start(ctx, c.Pod("client"), testbed.ProcessSpec{Name: "hello", Role: "client", Args: []string{"hello"}, Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	<-hello.Done()
	if hello.Err() != nil || out.String() != "hello client\n" || hello.Pod != "client" || hello.Node != "n0" || hello.PID < FirstPID {
		t.Errorf("hello: err %v, output %q, %+v", hello.Err(), out.String(), hello)
	}
	if _, err := c.Start(ctx, c.Pod("n1-p0"), testbed.ProcessSpec{Name: "broken", Args: []string{"x"}}); !errors.Is(err, injected) {
		t.Errorf("FailStart: err %v", err)
	}
	idle, err := c.StartOnNode(ctx, c.Nodes()[1], testbed.ProcessSpec{Name: "proxy", Args: []string{"proxy"}})
	if err != nil {
		t.Fatal(err)
	}
	stubborn, err := c.Start(ctx, c.Pod("n1-p1"), testbed.ProcessSpec{Name: "stubborn", Args: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Processes(); len(got) != 2 || got[0] != idle || got[1] != stubborn {
		t.Errorf("Processes() = %v, want the two running ones", got)
	}
	// SIGHUP reaches the program and does not stop Idle.
	if err := idle.Signal(syscall.SIGHUP); err != nil || idle.Exited() {
		t.Errorf("SIGHUP: %v, exited %v", err, idle.Exited())
	}
	// SIGKILL ends a process that ignores SIGTERM.
	if err := stubborn.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-stubborn.Done()
	if !errors.Is(stubborn.Err(), ErrKilled) {
		t.Errorf("killed process exit %v", stubborn.Err())
	}
	start := time.Now()
	if err := c.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if !idle.Exited() || idle.Err() != nil || time.Since(start) > time.Second {
		t.Errorf("Destroy: idle exited %v (%v) after %s", idle.Exited(), idle.Err(), time.Since(start))
	}
	if sent := c.Started()[1].Sent(); !slices.Equal(sent, []os.Signal{syscall.SIGHUP, syscall.SIGTERM}) {
		t.Errorf("signals sent to idle: %v", sent)
	}
	if _, err := c.Start(ctx, c.Pod("client"), testbed.ProcessSpec{Name: "hello", Args: []string{"x"}}); err == nil {
		t.Error("Start after Destroy succeeded")
	}
	if err := c.Destroy(ctx); err != nil || c.DestroyCalls() != 2 {
		t.Errorf("second Destroy: %v, calls %d", err, c.DestroyCalls())
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"create c0ffee", "start hello in pod client", "start broken in pod n1-p0", "start proxy in node n1",
		"start stubborn in pod n1-p1", "destroy c0ffee", "start hello in pod client", "destroy c0ffee"}
	if !slices.Equal(events, want) {
		t.Errorf("trace\n%q\nwant\n%q", events, want)
	}
}

func TestDown(t *testing.T) {
	var p Provider
	ctx := context.Background()
	a, _ := p.Create(ctx, spec())
	other := spec()
	other.RunID = "beef"
	b, _ := p.Create(ctx, other)
	removed, err := p.Down(ctx, "beef")
	if err != nil || len(removed) != 7 || !b.(*Cluster).Destroyed() || a.(*Cluster).Destroyed() {
		t.Errorf("Down(beef) = %v, %v", removed, err)
	}
	if removed, err := p.Down(ctx, ""); err != nil || len(removed) != 7 || !a.(*Cluster).Destroyed() {
		t.Errorf(`Down("") = %v, %v`, removed, err)
	}
	if !slices.Equal(p.Downs(), []string{"beef", ""}) {
		t.Errorf("downs %v", p.Downs())
	}
}
