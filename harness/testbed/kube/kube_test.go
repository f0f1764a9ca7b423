package kube

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestConnectUnreachable: a kubeconfig whose server does not answer fails
// in the given time, naming the server and the kubeconfig.
func TestConnectUnreachable(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	// Port 1 on loopback: nothing listens there.
	err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: ctx, context: {cluster: c, user: u}}]
current-context: ctx
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = Connect(context.Background(), Options{Kubeconfig: kc, Timeout: 3 * time.Second})
	if err == nil {
		t.Fatal("Connect succeeded against a closed port")
	}
	for _, want := range []string{"https://127.0.0.1:1", "unreachable", kc} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s", d)
	}

	_, err = Connect(context.Background(), Options{Kubeconfig: kc, Context: "nope"})
	if err == nil || !strings.Contains(err.Error(), `"nope"`) || !strings.Contains(err.Error(), kc) {
		t.Errorf("unknown context: %v", err)
	}
	_, err = Connect(context.Background(), Options{Kubeconfig: filepath.Join(t.TempDir(), "missing")})
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing kubeconfig: %v", err)
	}
}

func TestPodFailure(t *testing.T) {
	pod := func(reason string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "meshbench-1", Name: "echo-x"},
			Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
				Name: "echo", Image: "example.invalid/meshbench:v1",
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: "details"}},
			}}},
		}
	}
	for _, r := range []string{"ErrImageNeverPull", "ImagePullBackOff", "CrashLoopBackOff", "InvalidImageName"} {
		err := podFailure(pod(r))
		if err == nil {
			t.Errorf("%s: not a failure", r)
			continue
		}
		want := "pod meshbench-1/echo-x container echo (image example.invalid/meshbench:v1): " + r + ": details"
		if err.Error() != want {
			t.Errorf("%s: %q, want %q", r, err, want)
		}
	}
	for _, r := range []string{"ContainerCreating", "ErrImagePull", "PodInitializing"} {
		if err := podFailure(pod(r)); err != nil {
			t.Errorf("%s: %v, want a pod that may still start", r, err)
		}
	}
	p := pod("ContainerCreating")
	if got := describePending(p); got != "echo-x Pending echo waiting: ContainerCreating details" {
		t.Errorf("pending: %q", got)
	}
}

func TestMergeEndpointSlices(t *testing.T) {
	yes, no := true, false
	node := "n1"
	ss := []*discoveryv1.EndpointSlice{
		{Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"198.18.129.3"}, Conditions: discoveryv1.EndpointConditions{Ready: &yes}, NodeName: &node,
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "b"}},
			{Addresses: []string{"198.18.129.2"}, Conditions: discoveryv1.EndpointConditions{Ready: &no}},
		}},
		{Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"198.18.129.4"}, Conditions: discoveryv1.EndpointConditions{Ready: &yes, Terminating: &yes}},
			// The same address in a second slice (during a slice
			// rebalance): one entry, ready if either says so.
			{Addresses: []string{"198.18.129.2"}, Conditions: discoveryv1.EndpointConditions{Ready: &yes}},
		}},
	}
	got := merge(ss)
	want := []Endpoint{
		{IP: "198.18.129.2", Ready: true},
		{IP: "198.18.129.3", Pod: "b", Node: "n1", Ready: true},
		{IP: "198.18.129.4", Ready: false},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestMissingPermissionsError(t *testing.T) {
	e := &MissingPermissionsError{Namespace: "meshbench-ab", Missing: []Permission{Permissions[0], Permissions[4]}}
	var m *MissingPermissionsError
	if !errors.As(error(e), &m) {
		t.Fatal("not a MissingPermissionsError")
	}
	s := e.Error()
	for _, want := range []string{"missing 2 RBAC permission(s)", "create namespaces (cluster-wide)", "create deployments.apps (in meshbench-ab)"} {
		if !strings.Contains(s, want) {
			t.Errorf("%q lacks %q", s, want)
		}
	}
}

func TestParseInterfaceOf(t *testing.T) {
	out := `1: lo    inet 127.0.0.1/8 scope host lo\       valid_lft forever preferred_lft forever
2: mb-up@if7    inet 198.19.1.1/24 brd 198.19.1.255 scope global mb-up\       valid_lft forever preferred_lft forever
3: cni0    inet 198.18.128.1/24 brd 198.18.128.255 scope global cni0\       valid_lft forever preferred_lft forever
`
	for _, tc := range []struct {
		addr, want string
	}{
		{"198.19.1.1", "mb-up"},
		{"198.18.128.1", "cni0"},
		{"198.19.1.2", ""},
	} {
		got, err := parseInterfaceOf(out, netip.MustParseAddr(tc.addr))
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("interface of %s: %q, %v; want %q", tc.addr, got, err, tc.want)
		}
	}
}
