package kubeenv

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

const echoImage = "meshbench.local/echo:v1"

// buildEcho builds testdata/echo statically and packages it as echoImage.
func buildEcho(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "echo")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./testdata/echo")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build echo: %v\n%s", err, out)
	}
	tar := filepath.Join(dir, "echo.tar")
	if err := BuildImage(echoImage, bin, nil, tar); err != nil {
		t.Fatal(err)
	}
	return tar
}

// TestNodeEndToEnd runs two real nodes (containerd, kubelet, kube-proxy in
// their own network namespaces, joined by a fabric): an echo Deployment
// built with go-containerregistry becomes Running, its pods answer from the
// fabric, a ClusterIP Service reaches them through kube-proxy from a pod on
// the same node and from a pod on the other node, the API server reaches
// the kubelet (pod logs), and teardown restores the host byte for byte.
func TestNodeEndToEnd(t *testing.T) {
	privileged(t, "containerd", "ctr", "runc", "nsenter", "unshare", "iptables-save")
	if _, err := os.Stat(filepath.Join(cniBinDir, "bridge")); err != nil {
		t.Fatalf("CNI plugins missing: `make test` installs them (ci/install-deps.sh test): %v", err)
	}
	bins := binaries(t)
	tar := buildEcho(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	runID := fmt.Sprintf("%08x", uint32(time.Now().UnixNano()))
	before, err := SnapshotHost(ctx, runID)
	if err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs after the environment's Stop.
	t.Cleanup(func() {
		after, err := SnapshotHost(context.Background(), runID)
		if err != nil {
			t.Fatal(err)
		}
		if d := before.Diff(after); len(d) > 0 {
			t.Errorf("the host differs after teardown:\n%s", strings.Join(d, "\n"))
		}
	})
	cp := startControlPlane(t, Options{RunID: runID, Binaries: bins})
	c := cp.Client()
	for i := range 2 {
		start := time.Now()
		n, err := cp.AddNode(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("node %s Ready in %v", n.Name, time.Since(start).Round(time.Millisecond))
		start = time.Now()
		if err := n.ImportImage(ctx, tar); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			t.Logf("image import %v", time.Since(start).Round(time.Millisecond))
		}
	}

	// Backends on node-1 only, so that a client on node-0 crosses nodes.
	start := time.Now()
	d := deployment("echo", echoImage, 2, []string{"-listen", ":8080"}, map[string]string{"kubernetes.io/hostname": NodeName(1)})
	if _, err := c.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods := waitRunning(ctx, t, c, "default", "echo", 2)
	t.Logf("echo deployment Running in %v", time.Since(start).Round(time.Millisecond))
	for _, p := range pods {
		if ip := mustAddr(t, p.Status.PodIP); !NodePodCIDR(1).Contains(ip) {
			t.Errorf("pod %s IP %s outside node-1's %s", p.Name, ip, NodePodCIDR(1))
		}
	}
	svc, err := c.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec:       corev1.ServiceSpec{Selector: labels("echo"), Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("pod answers from the fabric", func(t *testing.T) {
		hc := &http.Client{Transport: &http.Transport{DialContext: cp.DialContext}, Timeout: 5 * time.Second}
		defer hc.CloseIdleConnections()
		resp, err := hc.Get("http://" + net.JoinHostPort(pods[0].Status.PodIP, "8080") + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "echo from "+pods[0].Name) {
			t.Errorf("answer %q, want one from %s", body, pods[0].Name)
		}
	})

	t.Run("port-forward through the API server", func(t *testing.T) {
		start := time.Now()
		body, err := portForwardGet(ctx, cp, pods[0].Name, 8080)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(body, "echo from "+pods[0].Name) {
			t.Errorf("answer %q, want one from %s", body, pods[0].Name)
		}
		t.Logf("port-forward GET in %v: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(body))
	})

	for _, tc := range []struct {
		name string
		node int
	}{
		{"service from the same node", 1},
		{"service across nodes", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("client-%d", tc.node)
			start := time.Now()
			_, err := c.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec: corev1.PodSpec{
					NodeName:      NodeName(tc.node),
					RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{
						Name: "client", Image: echoImage, ImagePullPolicy: corev1.PullNever,
						Args: []string{"-get", "http://" + net.JoinHostPort(svc.Spec.ClusterIP, "80") + "/", "-for", "30s"},
					}},
				},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var phase corev1.PodPhase
			for phase != corev1.PodSucceeded && phase != corev1.PodFailed {
				select {
				case <-ctx.Done():
					t.Fatalf("client pod %s: %s: %v", name, phase, ctx.Err())
				case <-time.After(100 * time.Millisecond):
				}
				p, err := c.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
				if err == nil {
					phase = p.Status.Phase
				}
			}
			// Logs come from the kubelet, through the API server's egress
			// proxy into the fabric.
			logs, err := c.CoreV1().Pods("default").GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
			if err != nil {
				t.Fatalf("logs of %s: %v", name, err)
			}
			if phase != corev1.PodSucceeded || !strings.Contains(string(logs), "echo from echo-") {
				t.Fatalf("client on %s: %s, logs %q", NodeName(tc.node), phase, logs)
			}
			t.Logf("%s: %s in %v", NodeName(tc.node), strings.TrimSpace(string(logs)), time.Since(start).Round(time.Millisecond))
		})
	}
}

// portForwardGet forwards a local port to the pod's port through the API
// server (and its egress proxy to the kubelet), as the harness reaches node
// agents, and GETs / through it.
func portForwardGet(ctx context.Context, cp *ControlPlane, pod string, port int) (string, error) {
	cfg := cp.Config()
	rt, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return "", err
	}
	u, err := url.Parse(cfg.Host + "/api/v1/namespaces/default/pods/" + pod + "/portforward")
	if err != nil {
		return "", err
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: rt}, http.MethodPost, u)
	stop, ready := make(chan struct{}), make(chan struct{})
	defer close(stop)
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("0:%d", port)}, stop, ready, io.Discard, io.Discard)
	if err != nil {
		return "", err
	}
	errc := make(chan error, 1)
	go func() { errc <- fw.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-errc:
		return "", fmt.Errorf("port-forward: %w", err)
	case <-ctx.Done():
		return "", ctx.Err()
	}
	ports, err := fw.GetPorts()
	if err != nil {
		return "", err
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d/", ports[0].Local))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
