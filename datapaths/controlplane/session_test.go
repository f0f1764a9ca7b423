package controlplane_test

import (
	"context"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/meshbench/meshbench/datapaths/controlplane"
	"github.com/meshbench/meshbench/datapaths/proxy"
)

// TestSessionPodReplaced walks a pod delete through a session with two
// builtin proxies: the deleted pod's proxy leaves (stopped), so pushes do
// not wait for it; the endpoint's new address and health are pushed to
// the other; the pod's new proxy rejoins with the current configuration.
func TestSessionPodReplaced(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sock := filepath.Join(t.TempDir(), "xds.sock")
	m := modelWith(2)
	m.Proxies = []string{controlplane.SidecarNodeID("pod-0"), controlplane.SidecarNodeID("pod-1")}
	s, err := controlplane.StartSession(ctx, sock, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	start := func(pod string) *proxy.Builtin {
		p := proxy.NewBuiltin(proxy.Options{XDSSocket: sock, NodeID: controlplane.SidecarNodeID(pod), AdminAddr: "127.0.0.1:0",
			ListenIP: "127.0.0.1", OutboundPort: proxy.FreePort, InboundPort: proxy.FreePort})
		if err := p.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Stop(context.Background()) })
		return p
	}
	start("pod-0")
	deleted := start("pod-1")
	if err := s.WaitAcked(ctx); err != nil {
		t.Fatal(err)
	}
	// The measured push: one time per proxy, the slowest of them Push.
	if err := s.MeasurePush(ctx); err != nil {
		t.Fatal(err)
	}
	if len(s.PushSpread) != 2 || slices.Max(s.PushSpread) != s.Push || slices.Min(s.PushSpread) <= 0 {
		t.Errorf("push spread %v, push %v: want one time per proxy, the largest the push's", s.PushSpread, s.Push)
	}
	if met := s.Metrics(); met["xds_push_to_ack_p50_us"] <= 0 || met["xds_push_to_ack_p50_us"] > met["xds_push_to_ack_us"] || met["xds_push_to_ack_p99_us"] != met["xds_push_to_ack_us"] {
		t.Errorf("metrics %v: want 0 < p50 ≤ max, and p99 = max of two", met)
	}

	// pod-1 is deleted: its proxy goes with it. Without Leave, the pushes
	// below would wait for it until their deadline.
	s.Leave(controlplane.SidecarNodeID("pod-1"))
	deleted.Stop(ctx)
	short, cancelShort := context.WithTimeout(ctx, 5*time.Second)
	defer cancelShort()
	if err := s.SetPodHealth(short, "pod-1", false); err != nil {
		t.Fatalf("push with the deleted pod's proxy gone: %v", err)
	}
	repl := netip.MustParseAddr("198.18.0.9")
	if err := s.SetPodAddress(short, "pod-1", repl); err != nil {
		t.Fatal(err)
	}

	// The replacement's proxy starts and rejoins; pushes wait for it again.
	start("pod-1")
	if err := s.Rejoin(short, controlplane.SidecarNodeID("pod-1")); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPodHealth(short, "pod-1", true); err != nil {
		t.Fatal(err)
	}
	got := m.WithPodAddress("pod-1", repl).Services[0].Endpoints[1]
	if got.IP != repl || !got.Healthy || got.Pod != "pod-1" {
		t.Errorf("WithPodAddress: endpoint %+v", got)
	}
	if m.Services[0].Endpoints[1].IP == repl {
		t.Error("WithPodAddress changed the model it was called on")
	}
	if s.Metrics()["xds_endpoint_push_to_ack_us"] <= 0 {
		t.Errorf("metrics %v: no endpoint push measured", s.Metrics())
	}
}
