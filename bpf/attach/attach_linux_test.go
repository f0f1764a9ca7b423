package attach

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/meshbench/meshbench/bpf/internal/bpftest"
	"github.com/meshbench/meshbench/bpf/sockmap"
	"github.com/meshbench/meshbench/bpf/steer"
	"github.com/meshbench/meshbench/harness/testbed/testutil"
	"github.com/meshbench/meshbench/internal/cgroupfs"
)

func TestMain(m *testing.M) {
	bpftest.Main()
	os.Exit(testutil.TestMainLeakCheck(m))
}

var loopProxy = netip.MustParseAddrPort("127.0.0.1:15001")

// TestValidate: a spec that names nothing, a bad cgroup path, or steering
// to or for addresses outside loopback and the testbed's range is refused
// before anything loads (an agent refuses it too).
func TestValidate(t *testing.T) {
	cg := []string{"/sys/fs/cgroup/meshbench/x"}
	for _, tc := range []struct {
		name string
		spec Spec
		want string // in the error; "" for valid
	}{
		{"sidecar steering", Spec{Steer: &steer.Config{Proxy: loopProxy}, Sockmap: &sockmap.Config{}, Cgroups: cg}, ""},
		{"node proxy steering", Spec{Steer: &steer.Config{Proxy: netip.MustParseAddrPort("198.18.0.1:15006")}, Cgroups: cg, Getsockopt: cg}, ""},
		{"no programs", Spec{Cgroups: cg}, "no programs"},
		{"getsockopt without steer", Spec{Sockmap: &sockmap.Config{}, Getsockopt: cg}, "without steer"},
		{"relative cgroup", Spec{Sockmap: &sockmap.Config{}, Cgroups: []string{"meshbench/x"}}, "not a clean absolute path"},
		{"cgroup escaping", Spec{Sockmap: &sockmap.Config{}, Cgroups: []string{"/sys/fs/cgroup/../../etc"}}, "not a clean absolute path"},
		{"private proxy", Spec{Steer: &steer.Config{Proxy: netip.MustParseAddrPort("10.0.0.1:15001")}, Cgroups: cg}, "neither loopback"},
		{"public proxy", Spec{Steer: &steer.Config{Proxy: netip.MustParseAddrPort("8.8.8.8:15001")}, Cgroups: cg}, "neither loopback"},
		{"no proxy", Spec{Steer: &steer.Config{}, Cgroups: cg}, "neither loopback"},
		{"meshed private", Spec{Steer: &steer.Config{Proxy: loopProxy, Meshed: []netip.Prefix{netip.MustParsePrefix("192.168.0.0/16")}}, Cgroups: cg}, "outside"},
		{"meshed wider", Spec{Steer: &steer.Config{Proxy: loopProxy, Meshed: []netip.Prefix{netip.MustParsePrefix("198.0.0.0/8")}}, Cgroups: cg}, "outside"},
		{"meshed inside", Spec{Steer: &steer.Config{Proxy: loopProxy, Meshed: []netip.Prefix{netip.MustParsePrefix("198.19.0.0/16")}}, Cgroups: cg}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.spec.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate: %v, want valid", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// TestLocalNotCgroup: a directory outside any cgroup v2 hierarchy, or the
// hierarchy's root (every socket of the machine), is refused before
// anything loads.
func TestLocalNotCgroup(t *testing.T) {
	_, err := Local{}.AttachBPF(context.Background(), Spec{Sockmap: &sockmap.Config{}, Cgroups: []string{t.TempDir()}})
	if err == nil || !strings.Contains(err.Error(), "not in a cgroup v2 hierarchy") {
		t.Errorf("attach to a temporary directory: %v", err)
	}
	roots, err := cgroupfs.Find()
	if err != nil || roots.V2 == "" {
		t.Skipf("no cgroup v2 hierarchy here (%v)", err)
	}
	_, err = Local{}.AttachBPF(context.Background(), Spec{Sockmap: &sockmap.Config{}, Cgroups: []string{roots.V2}})
	if err == nil || !strings.Contains(err.Error(), "root of its cgroup v2 hierarchy") {
		t.Errorf("attach to the cgroup v2 root %s: %v", roots.V2, err)
	}
}

// TestLocal loads steering and sockmap into a pod's cgroup in this
// process, sees a connection steered to the pod's proxy and its messages
// spliced in the set's counters, and leaves nothing attached after Close.
func TestLocal(t *testing.T) {
	pod := bpftest.NewPod(t)
	pod.StartProxy(t, loopProxy.String(), bpftest.ProxyUID)
	set, err := Local{}.AttachBPF(context.Background(), Spec{
		Steer:   &steer.Config{Proxy: loopProxy},
		Sockmap: &sockmap.Config{},
		Cgroups: []string{pod.Pod.CgroupPath},
	})
	bpftest.RequireLoaded(t, "attach steer and sockmap", err)
	closed := false
	defer func() {
		if !closed {
			set.Close(context.Background())
		}
	}()
	if set.MemlockBytes() <= 0 {
		t.Errorf("memlock %d bytes", set.MemlockBytes())
	}
	r := pod.Client(t, "198.18.200.1:80", 0, 10, 64)
	if r.First != "ORIG 198.18.200.1:80" || r.Rounds != 10 {
		t.Fatalf("client saw %+v: not steered to the proxy", r)
	}
	c, err := set.Counters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("counters %v, memlock %d bytes", c, set.MemlockBytes())
	if c["steer_rewrites"] != 1 {
		t.Errorf("steer_rewrites %d, want 1", c["steer_rewrites"])
	}
	if c["sockmap_redirects"] < 10 {
		t.Errorf("sockmap_redirects %d, want at least one per round trip (10)", c["sockmap_redirects"])
	}
	if err := set.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	closed = true
	if err := set.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := set.Counters(context.Background()); err == nil {
		t.Error("counters of a closed set: no error")
	}
	bpftest.CheckDetached(t, pod.Pod.CgroupPath, []ebpf.AttachType{ebpf.AttachCGroupInet4Connect, ebpf.AttachCGroupSockOps}, nil, nil)
}

// TestLocalUpdate moves a set from one pod's cgroup to another's, as a
// replaced pod's node does: the new pod's connects are steered and
// spliced, the old pod's cgroup has nothing attached, and the counters
// carry on.
func TestLocalUpdate(t *testing.T) {
	old, repl := bpftest.NewPod(t), bpftest.NewPod(t)
	repl.StartProxy(t, loopProxy.String(), bpftest.ProxyUID)
	set, err := Local{}.AttachBPF(context.Background(), Spec{
		Steer:   &steer.Config{Proxy: loopProxy},
		Sockmap: &sockmap.Config{},
		Cgroups: []string{old.Pod.CgroupPath},
	})
	bpftest.RequireLoaded(t, "attach steer and sockmap", err)
	defer set.Close(context.Background())
	if err := set.Update(context.Background(), []string{t.TempDir()}, nil); err == nil || !strings.Contains(err.Error(), "not in a cgroup v2 hierarchy") {
		t.Errorf("update with a temporary directory: %v", err)
	}
	if err := set.Update(context.Background(), []string{repl.Pod.CgroupPath}, []string{old.Pod.CgroupPath}); err != nil {
		t.Fatal(err)
	}
	bpftest.CheckDetached(t, old.Pod.CgroupPath, []ebpf.AttachType{ebpf.AttachCGroupInet4Connect, ebpf.AttachCGroupSockOps}, nil, nil)
	r := repl.Client(t, "198.18.200.1:80", 0, 10, 64)
	if r.First != "ORIG 198.18.200.1:80" || r.Rounds != 10 {
		t.Fatalf("client in the new pod saw %+v: not steered to the proxy", r)
	}
	c, err := set.Counters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("counters after the update: %v", c)
	if c["steer_rewrites"] != 1 || c["sockmap_redirects"] < 10 {
		t.Errorf("steer_rewrites %d (want 1), sockmap_redirects %d (want ≥ 10)", c["steer_rewrites"], c["sockmap_redirects"])
	}
	if err := set.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := set.Update(context.Background(), []string{repl.Pod.CgroupPath}, nil); err == nil {
		t.Error("update of a closed set: no error")
	}
	bpftest.CheckDetached(t, repl.Pod.CgroupPath, []ebpf.AttachType{ebpf.AttachCGroupInet4Connect, ebpf.AttachCGroupSockOps}, nil, nil)
}
