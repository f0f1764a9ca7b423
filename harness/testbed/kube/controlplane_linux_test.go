package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshbench/meshbench/internal/kubeenv"
)

// startControlPlane runs a real control plane (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler) with kwok fake nodes, from the
// binaries internal/kubeenv builds once into its cache.
func startControlPlane(t *testing.T, kwokNodes int) *kubeenv.ControlPlane {
	t.Helper()
	return startControlPlaneID(t, fmt.Sprintf("%08x", uint32(time.Now().UnixNano())), kwokNodes)
}

func startControlPlaneID(t *testing.T, runID string, kwokNodes int) *kubeenv.ControlPlane {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a Kubernetes control plane (run the tests as root)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	bins, skip, err := kubeenv.TestBinaries(ctx, log)
	if err != nil {
		t.Fatalf("Kubernetes binaries: %v", err)
	}
	if skip != "" {
		t.Skip(skip)
	}
	cp, err := kubeenv.StartControlPlane(ctx, kubeenv.Options{RunID: runID, KwokNodes: kwokNodes, Binaries: bins, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cp.Stop(ctx); err != nil {
			t.Errorf("stop control plane: %v", err)
		}
	})
	return cp
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestAPIAgainstControlPlane exercises the provider's API work against a
// real API server with two kwok nodes: connect through a kubeconfig, RBAC
// checks for an admin and a user with none, a namespace and its apps
// validated and created, pods waited for and spread over the allowed
// nodes, the EndpointSlice watch through a pod's deletion, clear errors
// for forbidden and invalid requests, and Delete/Down leaving nothing.
func TestAPIAgainstControlPlane(t *testing.T) {
	cp := startControlPlane(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	start := time.Now()
	c, err := Connect(ctx, Options{Kubeconfig: cp.KubeconfigPath()})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.Version(), "v1.") {
		t.Errorf("version %q", c.Version())
	}
	runID := "a1b2c3"
	ns := NamespaceName(runID)

	// RBAC: the admin may do everything; a user with no role nothing,
	// and every permission is named.
	if err := c.CheckAccess(ctx, ns); err != nil {
		t.Fatalf("admin: %v", err)
	}
	cfg := cp.Config()
	cfg.Impersonate.UserName = "meshbench-test-nobody"
	nobody, err := Connect(ctx, Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	err = nobody.CheckAccess(ctx, ns)
	var missing *MissingPermissionsError
	if !errors.As(err, &missing) || len(missing.Missing) != len(Permissions) {
		t.Fatalf("nobody: %v", err)
	}
	// Granted everything but deleting pods in the run's namespace, the
	// user lacks exactly that.
	grantAllBut(ctx, t, c, "meshbench-test-nobody", Permission{Resource: "pods", Verb: "delete", Namespaced: true})
	err = nobody.CheckAccess(ctx, ns)
	if !errors.As(err, &missing) || len(missing.Missing) != 1 || missing.Missing[0].String() != "delete pods" {
		t.Fatalf("nobody after grant: %v", err)
	}
	t.Logf("RBAC checks (%d permissions) took %s", len(Permissions), time.Since(start).Round(time.Millisecond))

	n, err := c.CreateNamespace(ctx, runID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateNamespace(ctx, runID); err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Errorf("second CreateNamespace: %v", err)
	}

	// The API server validates the manifests: an invalid name is refused,
	// and the error names the object.
	img := Image{Ref: "meshbench.local/meshbench:test", PullPolicy: "Never"}
	err = n.Create(ctx, img, App{Name: "Bad_Name", Replicas: 1, Args: []string{"/meshbench", "echo"}, Port: 8080})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "deployment "+ns+"/Bad_Name") {
		t.Errorf("invalid name: %v", err)
	}

	servers := []string{kubeenv.KwokNodeName(1)}
	apps := []App{
		{Name: "client", Replicas: 1, Args: []string{"/meshbench", "echo"}, Nodes: []string{kubeenv.KwokNodeName(0)}},
		{Name: "echo", Replicas: 2, Args: []string{"/meshbench", "echo", "--listen", ":8080"}, Port: 8080, Nodes: servers,
			Readiness: &Probe{Period: time.Second, Timeout: time.Second, FailureThreshold: 1, SuccessThreshold: 1}},
	}
	if err := n.Create(ctx, img, apps...); err != nil {
		t.Fatal(err)
	}
	var seen []int
	waitStart := time.Now()
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	pods, err := n.WaitReady(wctx, apps, func(ready, want int) { seen = append(seen, ready) })
	wcancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("3 pods ready in %s (progress %v)", time.Since(waitStart).Round(time.Millisecond), seen)
	if len(pods) != 3 || pods[0].App != "client" || pods[0].Node != kubeenv.KwokNodeName(0) {
		t.Fatalf("pods %+v", pods)
	}
	for _, p := range pods[1:] {
		if p.App != "echo" || p.Node != servers[0] || p.IP == "" {
			t.Errorf("echo pod %+v", p)
		}
	}
	if len(seen) == 0 || seen[len(seen)-1] != 3 {
		t.Errorf("progress %v", seen)
	}

	// EndpointSlices: both replicas, then a pod deleted (as pod-kill does
	// on Kubernetes) leaves the set and its replacement joins it.
	sets := make(chan []Endpoint, 16)
	wctx, wcancel = context.WithCancel(ctx)
	defer wcancel()
	if err := n.WatchEndpoints(wctx, "echo", func(e []Endpoint) { sets <- e }); err != nil {
		t.Fatal(err)
	}
	want := []string{pods[1].IP, pods[2].IP}
	slices.Sort(want)
	waitEndpoints(t, sets, func(e []Endpoint) bool { return slices.Equal(readyIPs(e), want) }, "both replicas ready")
	killed := pods[1]
	delStart := time.Now()
	if err := c.Clientset().CoreV1().Pods(ns).Delete(ctx, killed.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// By pod name: kwok may give the replacement the deleted pod's IP.
	waitEndpoints(t, sets, func(e []Endpoint) bool { return !slices.Contains(readyPods(e), killed.Name) }, "the deleted pod gone")
	t.Logf("deleted pod left the endpoints after %s", time.Since(delStart).Round(time.Millisecond))
	waitEndpoints(t, sets, func(e []Endpoint) bool {
		names := readyPods(e)
		return len(names) == 2 && !slices.Contains(names, killed.Name)
	}, "a replacement ready")
	t.Logf("replacement ready after %s", time.Since(delStart).Round(time.Millisecond))

	// A user without delete on pods gets the server's refusal.
	err = nobody.Clientset().CoreV1().Pods(ns).Delete(ctx, pods[2].Name, metav1.DeleteOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("forbidden delete: %v", err)
	}

	// Down finds the namespace by its labels and waits for it to go.
	delStart = time.Now()
	removed, err := c.Down(ctx, runID)
	if err != nil || len(removed) != 1 || removed[0] != "namespace "+ns {
		t.Fatalf("Down: %v %v", removed, err)
	}
	t.Logf("namespace deleted in %s", time.Since(delStart).Round(time.Millisecond))
	if _, err := c.Clientset().CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("namespace after Down: %v", err)
	}
	if err := n.Delete(ctx); err != nil {
		t.Errorf("Delete after Down: %v", err)
	}
}

func readyIPs(eps []Endpoint) []string {
	var ips []string
	for _, e := range eps {
		if e.Ready {
			ips = append(ips, e.IP)
		}
	}
	return ips
}

func readyPods(eps []Endpoint) []string {
	var names []string
	for _, e := range eps {
		if e.Ready {
			names = append(names, e.Pod)
		}
	}
	return names
}

func waitEndpoints(t *testing.T, sets <-chan []Endpoint, ok func([]Endpoint) bool, what string) {
	t.Helper()
	timeout := time.After(time.Minute)
	var last []Endpoint
	for {
		select {
		case e := <-sets:
			last = e
			if ok(e) {
				return
			}
		case <-timeout:
			t.Fatalf("endpoints never showed %s; last %+v", what, last)
		}
	}
}

// grantAllBut gives user every permission of Permissions except skip,
// cluster-wide.
func grantAllBut(ctx context.Context, t *testing.T, c *Client, user string, skip Permission) {
	t.Helper()
	var cluster, local []rbacv1.PolicyRule
	for _, p := range Permissions {
		if p.String() == skip.String() && p.Namespaced == skip.Namespaced {
			continue
		}
		res := p.Resource
		if p.Subresource != "" {
			res += "/" + p.Subresource
		}
		r := rbacv1.PolicyRule{APIGroups: []string{p.Group}, Resources: []string{res}, Verbs: []string{p.Verb}}
		if p.Namespaced {
			local = append(local, r)
		} else {
			cluster = append(cluster, r)
		}
	}
	cs := c.Clientset()
	name := "meshbench-test-" + user
	subj := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: cluster}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}, Subjects: subj}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The namespaced rules go into a second ClusterRole bound
	// cluster-wide: a RoleBinding would need the run's namespace, which
	// does not exist yet when a run checks its access.
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name + "-ns"}, Rules: local}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name + "-ns"},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name + "-ns"}, Subjects: subj}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestDiagnoseKwokOnly: doctor's cluster check against a real API server
// whose only nodes are kwok's: the server and permissions are fine, and no
// node can run the run's pods, which is the error.
func TestDiagnoseKwokOnly(t *testing.T) {
	cp := startControlPlane(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lines, err := Diagnose(ctx, Options{Config: cp.Config()})
	t.Logf("diagnosis:\n%s\nerror: %v", strings.Join(lines, "\n"), err)
	text := strings.Join(lines, "\n")
	if !strings.Contains(text, fmt.Sprintf("all %d a run needs are granted", len(Permissions))) || !strings.Contains(text, "0 of 2 can run") {
		t.Errorf("diagnosis does not report the permissions and the 2 kwok nodes")
	}
	if err == nil || !strings.Contains(err.Error(), "no node can run the run's pods") {
		t.Errorf("err = %v, want no node", err)
	}
}
