package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/meshbench/meshbench/harness/agent"
	"github.com/meshbench/meshbench/harness/agent/agentpb"
	"github.com/meshbench/meshbench/internal/kubeenv"
	"github.com/meshbench/meshbench/internal/nsutil"
)

const echoImage = "meshbench.local/kube-test-echo:v1"

// TestAPIOnRealNode runs the provider's API work against a real node
// (containerd, runc, kubelet with real readiness probes): pods wait to be
// Ready, an image that is not on the node fails at once naming the pod,
// image and reason, and a crashed container leaves the Service's
// endpoints when the kubelet notices, as a pod-kill on Kubernetes does.
// The host is compared before and after.
func TestAPIOnRealNode(t *testing.T) {
	realNodePrivileged(t)
	tar, echoBin := buildEcho(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cp, runID := startRealNode(t, ctx, tar)
	node := cp.Nodes()[0]

	c, err := Connect(ctx, Options{Config: cp.Config()})
	if err != nil {
		t.Fatal(err)
	}
	n, err := c.CreateNamespace(ctx, runID)
	if err != nil {
		t.Fatal(err)
	}
	img := Image{Ref: echoImage, PullPolicy: "Never"}

	// An image the node does not have fails at once, not at the timeout.
	ghost := App{Name: "ghost", Replicas: 1, Args: []string{"/echo", "-listen", ":8080"}}
	if err := n.Create(ctx, Image{Ref: "meshbench.local/absent:v1", PullPolicy: "Never"}, ghost); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	_, err = n.WaitReady(wctx, []App{ghost}, nil)
	wcancel()
	var perr *PodError
	if !errors.As(err, &perr) || perr.Reason != "ErrImageNeverPull" || perr.Image != "meshbench.local/absent:v1" ||
		!strings.HasPrefix(perr.Pod, "ghost-") {
		t.Fatalf("absent image: %v", err)
	}
	t.Logf("absent image reported in %s: %v", time.Since(start).Round(time.Millisecond), err)

	echo := App{Name: "echo", Replicas: 2, Args: []string{"/echo", "-listen", ":8080"}, Port: 8080,
		Nodes:     []string{node.Name},
		Readiness: &Probe{Period: time.Second, Timeout: time.Second, FailureThreshold: 1, SuccessThreshold: 1}}
	if err := n.Create(ctx, img, echo); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	wctx, wcancel = context.WithTimeout(ctx, time.Minute)
	pods, err := n.WaitReady(wctx, []App{echo}, nil)
	wcancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("2 echo pods Ready (readiness probe passed) in %s", time.Since(start).Round(time.Millisecond))

	// The node agent's resolver finds each pod's handles from its UID
	// alone, as the agent will on any node.
	for _, p := range pods {
		start := time.Now()
		res := &agent.Resolver{HostNetns: node.NetnsPath()}
		h, err := res.Resolve(p.UID)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("pod %s resolved in %s: pids %v, netns %s, cgroup %s, veth %s ↔ %s, ip %s", p.Name,
			time.Since(start).Round(time.Microsecond), h.PIDs, h.NetnsPath, h.CgroupPath, h.PodVeth, h.HostVeth, h.IP)
		checkHandles(t, p, h, node.NetnsPath())
	}
	if _, err := (&agent.Resolver{}).Resolve("00000000-0000-0000-0000-000000000000"); !errors.Is(err, agent.ErrNotOnNode) {
		t.Errorf("unknown pod: %v", err)
	}

	// The same through the agent's gRPC API, with its token.
	agentAPI(ctx, t, node.NetnsPath(), pods[0], echoBin, cp.DialContext)

	sets := make(chan []Endpoint, 16)
	wctx, wcancel = context.WithCancel(ctx)
	defer wcancel()
	if err := n.WatchEndpoints(wctx, "echo", func(e []Endpoint) { sets <- e }); err != nil {
		t.Fatal(err)
	}
	want := []string{pods[0].IP, pods[1].IP}
	slices.Sort(want)
	waitEndpoints(t, sets, func(e []Endpoint) bool { return slices.Equal(readyIPs(e), want) }, "both replicas ready")

	// Crash one container: SIGKILL to its process, found by the pod's
	// UID in its cgroup. The kubelet notices, the endpoints controller
	// marks it not ready, the container restarts and its probe passes.
	victim := pods[0]
	pids := podPIDs(t, victim.UID)
	if len(pids) == 0 {
		t.Fatalf("no process of pod %s (uid %s) found in /proc", victim.Name, victim.UID)
	}
	start = time.Now()
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	waitEndpoints(t, sets, func(e []Endpoint) bool { return !slices.Contains(readyIPs(e), victim.IP) }, "the crashed pod not ready")
	out := time.Since(start)
	waitEndpoints(t, sets, func(e []Endpoint) bool { return slices.Equal(readyIPs(e), want) }, "the restarted pod ready again")
	t.Logf("crashed container (pids %v): out of the endpoints after %s, back after %s",
		pids, out.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	dctx, dcancel := context.WithTimeout(ctx, time.Minute)
	defer dcancel()
	start = time.Now()
	if err := n.Delete(dctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("namespace deleted in %s", time.Since(start).Round(time.Millisecond))
}

// checkHandles checks resolved handles against the API server's view and
// the kernel's: the pod's IP on its veth, the host end in the node's
// namespace, and its echo process in the pod's cgroup.
func checkHandles(t *testing.T, p PodInfo, h *agent.PodHandles, nodeNetns string) {
	t.Helper()
	if h.HostNetwork || h.IP.String() != p.IP {
		t.Errorf("pod %s: ip %s (host network %v), the API server says %s", p.Name, h.IP, h.HostNetwork, p.IP)
	}
	if len(h.PIDs) < 2 {
		t.Errorf("pod %s: pids %v, want the pause and the echo process", p.Name, h.PIDs)
	}
	echo := podPIDs(t, p.UID)
	for _, pid := range echo {
		if !slices.Contains(h.PIDs, pid) {
			t.Errorf("pod %s: echo pid %d not among %v", p.Name, pid, h.PIDs)
		}
	}
	if h.CgroupPath == "" {
		t.Errorf("pod %s: no cgroup v2 path", p.Name)
	} else if procs := cgroupProcs(t, h.CgroupPath); len(echo) == 0 || !slices.Contains(procs, echo[0]) {
		t.Errorf("pod %s: echo pids %v not in %s (holds %v)", p.Name, echo, h.CgroupPath, procs)
	}
	var peer string
	err := nsutil.Do(nodeNetns, func() error {
		l, err := netlink.LinkByName(h.HostVeth)
		if err != nil {
			return err
		}
		peer = l.Attrs().HardwareAddr.String()
		return nil
	})
	if err != nil || peer != h.HostVethMAC {
		t.Errorf("pod %s: host veth %s in the node's namespace: %v (mac %s, resolved %s)", p.Name, h.HostVeth, err, peer, h.HostVethMAC)
	}
}

// cgroupProcs lists the processes in dir and the cgroups below it.
func cgroupProcs(t *testing.T, dir string) []int {
	t.Helper()
	var pids []int
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pids
}

// podPIDs returns the processes of the pod's containers other than the
// pause container: those whose cgroup path names the pod's UID.
func podPIDs(t *testing.T, uid string) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cg, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		if err != nil || !strings.Contains(string(cg), "pod"+uid) {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if strings.TrimSpace(string(comm)) == "echo" {
			pids = append(pids, pid)
		}
	}
	return pids
}

// buildEcho builds internal/kubeenv's test echo server statically and
// packages it as echoImage.
func buildEcho(t *testing.T) (tar, bin string) {
	t.Helper()
	// Readable by uid 1337, which the agent's Start runs it as (t.TempDir's
	// parent is private).
	dir, err := os.MkdirTemp("", "meshbench-kube-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(dir, "echo")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "../../../internal/kubeenv/testdata/echo")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build echo: %v\n%s", err, out)
	}
	tar = filepath.Join(dir, "echo.tar")
	if err := kubeenv.BuildImage(echoImage, bin, nil, tar); err != nil {
		t.Fatal(err)
	}
	return tar, bin
}

// agentAPI serves the agent's API on a unix socket and calls it as the
// harness will: Resolve a pod, Exec ip and iptables in its network
// namespace, and the refusals (wrong token, a tool not allowed, a pod not
// on the node).
func agentAPI(ctx context.Context, t *testing.T, nodeNetns string, pod PodInfo, program string,
	dial func(ctx context.Context, network, addr string) (net.Conn, error)) {
	t.Helper()
	token := "0123456789abcdef0123456789abcdef"
	srv := &agent.Server{Resolver: &agent.Resolver{HostNetns: nodeNetns}, Token: token, Executable: program}
	defer func() {
		if err := srv.StopAll(ctx); err != nil {
			t.Error(err)
		}
	}()
	g, err := srv.GRPCServer()
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(l)
	defer g.Stop()
	connect := func(tok string) agentpb.AgentClient {
		conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(agent.TokenCredentials(tok)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return agentpb.NewAgentClient(conn)
	}
	c := connect(token)
	h, err := c.Resolve(ctx, &agentpb.ResolveRequest{PodUid: pod.UID})
	if err != nil || h.GetIp() != pod.IP || h.GetHostVeth() == "" {
		t.Fatalf("Resolve over gRPC: %v %v", h, err)
	}
	start := time.Now()
	r, err := c.Exec(ctx, &agentpb.ExecRequest{PodUid: pod.UID, Argv: []string{"ip", "-4", "-o", "addr", "show"}})
	if err != nil || r.GetExitCode() != 0 || !strings.Contains(string(r.GetStdout()), " "+pod.IP+"/") {
		t.Fatalf("ip in the pod: %v %v", r, err)
	}
	t.Logf("agent Exec ip in the pod's netns: %s", time.Since(start).Round(time.Microsecond))
	r, err = c.Exec(ctx, &agentpb.ExecRequest{PodUid: pod.UID, Argv: []string{"iptables", "-w", "-t", "nat", "-S"}})
	if err != nil || r.GetExitCode() != 0 || !strings.Contains(string(r.GetStdout()), "-P PREROUTING ACCEPT") {
		t.Fatalf("iptables in the pod: %v %v", r, err)
	}
	r, err = c.Exec(ctx, &agentpb.ExecRequest{PodUid: pod.UID, Argv: []string{"iptables", "-t", "nope", "-S"}})
	if err != nil || r.GetExitCode() == 0 || len(r.GetStderr()) == 0 {
		t.Errorf("failing iptables: %v %v", r, err)
	}
	if _, err := c.Exec(ctx, &agentpb.ExecRequest{Argv: []string{"sh", "-c", "id"}}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("sh: %v", err)
	}
	if _, err := c.Resolve(ctx, &agentpb.ResolveRequest{PodUid: "00000000-0000-0000-0000-000000000000"}); status.Code(err) != codes.NotFound {
		t.Errorf("unknown pod: %v", err)
	}
	agentStart(ctx, t, c, pod, h, dial)
	if _, err := connect("wrong-token-wrong-token").Resolve(ctx, &agentpb.ResolveRequest{PodUid: pod.UID}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("wrong token: %v", err)
	}
}

// agentStart starts a server in the pod through the agent, as uid 1337,
// and checks it is where a sidecar would be: the pod's network namespace,
// a cgroup under the pod's, the right user; it answers on the pod's IP;
// Stop ends it and removes its cgroup.
func agentStart(ctx context.Context, t *testing.T, c agentpb.AgentClient, pod PodInfo, h *agentpb.PodHandles,
	dial func(ctx context.Context, network, addr string) (net.Conn, error)) {
	t.Helper()
	start := time.Now()
	r, err := c.Start(ctx, &agentpb.StartRequest{PodUid: pod.UID, Name: "sidecar", Args: []string{"-listen", ":9090"}, Uid: 1337, Gid: 1337})
	if err != nil {
		t.Fatal(err)
	}
	pid := int(r.GetPid())
	t.Logf("agent Start: pid %d in %s, %s", pid, r.GetCgroupPath(), time.Since(start).Round(time.Microsecond))
	if _, err := c.Start(ctx, &agentpb.StartRequest{PodUid: pod.UID, Name: "sidecar", Args: []string{"-listen", ":9091"}}); status.Code(err) != codes.AlreadyExists {
		t.Errorf("second process of the same name: %v", err)
	}
	if filepath.Dir(r.GetCgroupPath()) != h.GetCgroupPath() {
		t.Errorf("cgroup %s, want one under the pod's %s", r.GetCgroupPath(), h.GetCgroupPath())
	}
	if procs := cgroupProcs(t, r.GetCgroupPath()); !slices.Contains(procs, pid) {
		t.Errorf("pid %d not in %s (%v)", pid, r.GetCgroupPath(), procs)
	}
	procStatus, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if !strings.Contains(string(procStatus), "\nUid:\t1337\t") {
		t.Errorf("not uid 1337:\n%s", procStatus)
	}
	var podIno, procIno syscall.Stat_t
	if err := syscall.Stat(h.GetNetnsPath(), &podIno); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &procIno); err != nil {
		t.Fatal(err)
	}
	if podIno.Ino != procIno.Ino {
		t.Errorf("process netns %d, the pod's %d", procIno.Ino, podIno.Ino)
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: dial}, Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	var body []byte
	for range 50 {
		resp, err := hc.Get("http://" + net.JoinHostPort(pod.IP, "9090") + "/")
		if err == nil {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(string(body), "echo from") {
		t.Errorf("the started server on %s:9090 answered %q", pod.IP, body)
	}
	stop, err := c.Stop(ctx, &agentpb.StopRequest{Pid: int32(pid)})
	if err != nil || stop.GetExit() != "signal: killed" {
		t.Errorf("Stop: %v %v", stop, err)
	}
	if _, err := os.Stat(r.GetCgroupPath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cgroup %s after Stop: %v", r.GetCgroupPath(), err)
	}
	if _, err := c.Stop(ctx, &agentpb.StopRequest{Pid: int32(pid)}); status.Code(err) != codes.NotFound {
		t.Errorf("second Stop: %v", err)
	}
}

// TestAgentDaemonSetOnRealNode runs the meshbench image (built in-process
// from a static meshbench binary) as the agent DaemonSet on a real node,
// reaches the agent by port-forward through the API server with the
// run's token, and has it resolve an echo pod, run iptables in the pod's
// network namespace with the node's own iptables (chrooted into /host),
// and start a server in the pod.
func TestAgentDaemonSetOnRealNode(t *testing.T) {
	realNodePrivileged(t)
	echoTar, _ := buildEcho(t)
	meshTar := buildMeshbench(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cp, runID := startRealNode(t, ctx, echoTar, meshTar)
	c, err := Connect(ctx, Options{Config: cp.Config()})
	if err != nil {
		t.Fatal(err)
	}
	n, err := c.CreateNamespace(ctx, runID)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.Background(), time.Minute)
		defer dcancel()
		if err := n.Delete(dctx); err != nil {
			t.Error(err)
		}
	}()
	echo := App{Name: "echo", Replicas: 1, Args: []string{"/echo", "-listen", ":8080"}, Port: 8080}
	if err := n.Create(ctx, Image{Ref: echoImage, PullPolicy: "Never"}, echo); err != nil {
		t.Fatal(err)
	}
	token := "00112233445566778899aabbccddeeff"
	if err := n.CreateAgent(ctx, Image{Ref: meshbenchImage, PullPolicy: "Never"}, token); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	pods, err := n.WaitReady(wctx, []App{echo, {Name: AgentName, Replicas: 1}}, nil)
	wcancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("echo and agent pods ready in %s", time.Since(start).Round(time.Millisecond))
	var echoPod, agentPod PodInfo
	for _, p := range pods {
		if p.App == AgentName {
			agentPod = p
		} else {
			echoPod = p
		}
	}
	start = time.Now()
	addr, stop, err := n.PortForward(ctx, agentPod.Name, AgentPort)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(agent.TokenCredentials(token)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ac := agentpb.NewAgentClient(conn)
	h, err := ac.Resolve(ctx, &agentpb.ResolveRequest{PodUid: echoPod.UID})
	if err != nil {
		t.Fatalf("Resolve through the agent DaemonSet: %v", err)
	}
	t.Logf("port-forward and first Resolve: %s: %+v", time.Since(start).Round(time.Millisecond), h)
	if h.GetIp() != echoPod.IP || h.GetHostVeth() == "" || h.GetCgroupPath() == "" {
		t.Errorf("handles %+v, want ip %s", h, echoPod.IP)
	}
	r, err := ac.Exec(ctx, &agentpb.ExecRequest{PodUid: echoPod.UID, Argv: []string{"iptables", "-w", "-t", "nat", "-S"}})
	if err != nil || r.GetExitCode() != 0 || !strings.Contains(string(r.GetStdout()), "-P PREROUTING ACCEPT") {
		t.Fatalf("iptables through the agent: %v %v (stderr %s)", r, err, r.GetStderr())
	}
	sr, err := ac.Start(ctx, &agentpb.StartRequest{PodUid: echoPod.UID, Name: "sidecar", Uid: 1337, Gid: 1337,
		Args: []string{"echo", "--listen", ":9090", "--admin", "127.0.0.1:15091", "--pod", echoPod.Name}})
	if err != nil {
		t.Fatalf("Start through the agent: %v", err)
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: cp.DialContext}, Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	var got string
	for range 100 {
		resp, err := hc.Get("http://" + net.JoinHostPort(echoPod.IP, "9090") + "/")
		if err == nil {
			resp.Body.Close()
			got = resp.Status
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got != "200 OK" {
		t.Errorf("meshbench echo started by the agent in the pod: %q", got)
	}
	if _, err := ac.Stop(ctx, &agentpb.StopRequest{Pid: sr.GetPid()}); err != nil {
		t.Error(err)
	}
}

// startRealNode skips the test unless it runs as root, fails it if a tool
// `make test` installs is missing, and starts a control plane with one
// real node that has the image tars imported. Its cleanup checks that the
// host is as before (the caller's run id is the one returned).
func startRealNode(t *testing.T, ctx context.Context, tars ...string) (cp *kubeenv.ControlPlane, runID string) {
	t.Helper()
	return startRealNodes(t, ctx, 1, tars...)
}

// startRealNodes is startRealNode with n real nodes, each with the
// images imported.
func startRealNodes(t *testing.T, ctx context.Context, n int, tars ...string) (cp *kubeenv.ControlPlane, runID string) {
	t.Helper()
	runID = fmt.Sprintf("%08x", uint32(time.Now().UnixNano()))
	before, err := kubeenv.SnapshotHost(ctx, runID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		after, err := kubeenv.SnapshotHost(context.Background(), runID)
		if err != nil {
			t.Fatal(err)
		}
		if d := before.Diff(after); len(d) > 0 {
			t.Errorf("the host differs after teardown:\n%s", strings.Join(d, "\n"))
		}
	})
	cp = startControlPlaneID(t, runID, 0)
	for range n {
		node, err := cp.AddNode(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, tar := range tars {
			if err := node.ImportImage(ctx, tar); err != nil {
				t.Fatal(err)
			}
		}
	}
	return cp, runID
}

// realNodePrivileged skips the test unless it runs as root, and fails it
// when a tool the real node needs (which `make test` installs) is missing.
func realNodePrivileged(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a Kubernetes node (run the tests as root)")
	}
	for _, tool := range []string{"containerd", "ctr", "runc", "nsenter", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s missing: `make test` installs it (ci/install-deps.sh test)", tool)
		}
	}
}

const meshbenchImage = "meshbench.local/meshbench:test"

// buildMeshbench builds cmd/meshbench statically and packages it as
// meshbenchImage; it returns the image tar.
func buildMeshbench(t *testing.T) string {
	tar, _ := buildMeshbenchBin(t)
	return tar
}

// buildMeshbenchBin is buildMeshbench, also returning the static binary
// (with meshbench-kube next to it).
func buildMeshbenchBin(t *testing.T) (tar, bin string) {
	t.Helper()
	dir := t.TempDir()
	bin = filepath.Join(dir, "meshbench")
	start := time.Now()
	// meshbench-kube beside it: meshbench hands --provider kube to it.
	cmd := exec.Command("go", "build", "-trimpath", "-o", dir+"/", "../../../cmd/meshbench", "../../../cmd/meshbench-kube")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build meshbench: %v\n%s", err, out)
	}
	t.Logf("static meshbench and meshbench-kube built in %s", time.Since(start).Round(time.Millisecond))
	tar = filepath.Join(dir, "meshbench.tar")
	if err := kubeenv.BuildImage(meshbenchImage, bin, nil, tar); err != nil {
		t.Fatal(err)
	}
	return tar, bin
}
