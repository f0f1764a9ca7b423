package agent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/harness/agent"
	"github.com/meshbench/meshbench/harness/agent/agentpb"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/harness/testbed/netns"
	"github.com/meshbench/meshbench/harness/testbed/testutil"
	"github.com/meshbench/meshbench/internal/iptables"
	"github.com/meshbench/meshbench/internal/nsutil"
)

const testToken = "0123456789abcdef0123"

// serveAgent serves an agent on a unix socket for the test's life and
// returns a client of it.
func serveAgent(t *testing.T, token string) *agent.Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &agent.Server{Resolver: &agent.Resolver{}, Token: testToken}
	g, err := srv.GRPCServer()
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(l)
	t.Cleanup(g.Stop)
	c, err := agent.NewClient("unix:"+sock, token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestAgentHost reaches a testbed pod through an agent, as the harness
// reaches pods on Kubernetes nodes: HTTP over the agent's Dial stream (a
// small and a 3 MiB answer), a raw connection whose write side is shut,
// and iptables rules added, counted and checked through Exec, with the
// counts the same as the local host reads.
func TestAgentHost(t *testing.T) {
	testutil.Privileged(t)
	id := testutil.NewRunID(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := netns.New(netns.Options{}).Create(ctx, testbed.Spec{RunID: id, Nodes: 1, Pods: []testbed.PodSpec{{Name: "app"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Destroy(context.Background()) })
	pod := cl.Pod("app")
	local := pod.Netns()
	remote := nsutil.Netns{Path: pod.NetnsPath, Host: serveAgent(t, testToken)}

	// A server inside the pod, on its loopback only.
	l, err := nsutil.Listen(pod.NetnsPath, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 3<<16) // 3 MiB
	mux := http.NewServeMux()
	mux.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello from the pod") })
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) { w.Write(big) })
	hs := &http.Server{Handler: mux}
	go hs.Serve(l)
	defer hs.Close()
	addr := l.Addr().String()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)

	// Count the pod's inbound packets to the server with a rule added
	// through the agent.
	rule := []string{"INPUT", "-p", "tcp", "--dport", port, "-m", "comment", "--comment", "agent-host-test", "-j", "ACCEPT"}
	if err := iptables.Run(ctx, remote, append([]string{"-A"}, rule...)...); err != nil {
		t.Fatal(err)
	}
	if err := iptables.Run(ctx, remote, append([]string{"-C"}, rule...)...); err != nil {
		t.Errorf("the rule added through the agent is not there: %v", err)
	}

	body, err := datapaths.Get(ctx, remote, addr, "/small")
	if err != nil || string(body) != "hello from the pod" {
		t.Fatalf("GET /small through the agent: %q, %v", body, err)
	}
	body, err = datapaths.Get(ctx, remote, addr, "/big")
	if err != nil || !bytes.Equal(body, big) {
		t.Fatalf("GET /big through the agent: %d bytes (want %d), %v", len(body), len(big), err)
	}

	// Half-close: the server sees EOF and still answers.
	raw, err := remote.Dial(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(raw, "GET /small HTTP/1.0\r\nHost: x\r\n\r\n")
	raw.(interface{ CloseWrite() error }).CloseWrite()
	resp, err := io.ReadAll(raw)
	raw.Close()
	if err != nil || !strings.HasSuffix(string(resp), "hello from the pod") {
		t.Fatalf("HTTP/1.0 after CloseWrite through the agent: %q, %v", resp, err)
	}

	pr, _, n, err := iptables.Matched(ctx, remote, "filter", "agent-host-test")
	if err != nil {
		t.Fatal(err)
	}
	pl, _, _, err := iptables.Matched(ctx, local, "filter", "agent-host-test")
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 || pr < 10 || pr != pl {
		t.Errorf("rule counters: %d rules, %d packets through the agent, %d read locally; want 1 rule, ≥ 10 packets, equal", n, pr, pl)
	}
	t.Logf("3 requests: %d packets counted by the rule", pr)

	if err := iptables.Run(ctx, remote, append([]string{"-D"}, rule...)...); err != nil {
		t.Fatal(err)
	}
	if err := iptables.Run(ctx, remote, append([]string{"-C"}, rule...)...); !iptables.RuleAbsent(err) {
		t.Errorf("-C of a removed rule through the agent: %v, want exit status 1", err)
	}

	// Nothing listens on port 1: the dial fails with the reason.
	if _, err := remote.Dial(ctx, "tcp", "127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("dial of a closed port through the agent: %v, want connection refused", err)
	}
	// A relative namespace path is refused.
	if _, err := (nsutil.Netns{Path: "netns/x", Host: remote.Host}).Exec(ctx, []string{"ip", "link"}, ""); status.Code(errors.Unwrap(err)) != codes.InvalidArgument {
		t.Errorf("exec in a relative netns path: %v, want InvalidArgument", err)
	}
}

// TestAgentHostToken checks that the agent refuses streams and calls
// without the run's token.
func TestAgentHostToken(t *testing.T) {
	testutil.Privileged(t)
	wrong := nsutil.Netns{Path: "/proc/self/ns/net", Host: serveAgent(t, "not-the-token-at-all")}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := wrong.Dial(ctx, "tcp", "127.0.0.1:1")
	if status.Code(errors.Unwrap(err)) != codes.Unauthenticated {
		t.Errorf("dial with a wrong token: %v, want Unauthenticated", err)
	}
	_, err = wrong.Exec(ctx, []string{"ip", "link"}, "")
	if status.Code(errors.Unwrap(err)) != codes.Unauthenticated {
		t.Errorf("exec with a wrong token: %v, want Unauthenticated", fmt.Sprint(err))
	}
}

// TestAgentStartProgramRefused checks that an agent without
// --allow-program runs only its own executable.
func TestAgentStartProgramRefused(t *testing.T) {
	testutil.Privileged(t)
	c := serveAgent(t, testToken)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.API().Start(ctx, &agentpb.StartRequest{
		Name: "x", NetnsPath: "/proc/self/ns/net", CgroupPath: "/sys/fs/cgroup", Program: "/bin/true",
	})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("start of another program: %v, want PermissionDenied", err)
	}
}

// TestAgentAttachBPFRefused checks that an agent refuses a BPF spec that
// does not parse or does not validate (steering to an address outside
// loopback and the testbed's range), and that a set it does not hold is
// not found.
func TestAgentAttachBPFRefused(t *testing.T) {
	testutil.Privileged(t)
	c := serveAgent(t, testToken)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, spec := range []string{
		`{"steer":`,
		`{"steer":{"Proxy":"10.1.2.3:15001"},"cgroups":["/sys/fs/cgroup/x"]}`,
		`{"cgroups":["/sys/fs/cgroup/x"]}`,
	} {
		_, err := c.API().AttachBPF(ctx, &agentpb.AttachBPFRequest{SpecJson: []byte(spec)})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("attach %s: %v, want InvalidArgument", spec, err)
		}
	}
	if _, err := c.API().BPFCounters(ctx, &agentpb.BPFCountersRequest{Id: 42}); status.Code(err) != codes.NotFound {
		t.Errorf("counters of set 42: %v, want NotFound", err)
	}
	if _, err := c.API().DetachBPF(ctx, &agentpb.DetachBPFRequest{Id: 42}); status.Code(err) != codes.NotFound {
		t.Errorf("detach of set 42: %v, want NotFound", err)
	}
}

// TestAgentGoneNetns: a namespace that is gone is reported as such
// (os.ErrNotExist through the client, NotFound on the wire), as a local
// one would be, so cleanup can count what was in it as removed.
func TestAgentGoneNetns(t *testing.T) {
	testutil.Privileged(t)
	c := serveAgent(t, testToken)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	gone := nsutil.Netns{Path: filepath.Join(t.TempDir(), "gone"), Host: c}
	if _, err := gone.Exec(ctx, []string{"ip", "link"}, ""); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("exec in a gone namespace: %v, want os.ErrNotExist", err)
	}
}

// TestAgentRemovesNodeRules checks that an agent removes its run's rules
// from the node's namespace when it stops (and only its run's), as it
// does for a node proxy's inbound capture whose harness died.
func TestAgentRemovesNodeRules(t *testing.T) {
	testutil.Privileged(t)
	id := testutil.NewRunID(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := netns.New(netns.Options{}).Create(ctx, testbed.Spec{RunID: id, Nodes: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Destroy(context.Background()) })
	node := cl.Nodes()[0].Netns()
	rule := func(run string) []string {
		return []string{"PREROUTING", "-p", "tcp", "-d", "198.18.250.0/24", "-m", "comment", "--comment", iptables.NodeComment(run), "-j", "REDIRECT", "--to-ports", "15008"}
	}
	for _, run := range []string{id, id + "x"} {
		if err := iptables.Run(ctx, node, append([]string{"-t", "nat", "-A"}, rule(run)...)...); err != nil {
			t.Fatal(err)
		}
	}
	srv := &agent.Server{Resolver: &agent.Resolver{HostNetns: cl.Nodes()[0].NetnsPath}, RunID: id}
	if err := srv.StopAll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := iptables.Run(ctx, node, append([]string{"-t", "nat", "-C"}, rule(id)...)...); !iptables.RuleAbsent(err) {
		t.Errorf("the run's node rule is still there after the agent stopped (check: %v)", err)
	}
	if err := iptables.Run(ctx, node, append([]string{"-t", "nat", "-C"}, rule(id+"x")...)...); err != nil {
		t.Errorf("another run's node rule was removed: %v", err)
	}
	if n, err := srv.RemoveNodeRules(ctx); n != 0 || err != nil {
		t.Errorf("second removal: %d rules, %v", n, err)
	}
}
