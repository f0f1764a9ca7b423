package kubeenv

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

func ptr[T any](v T) *T { return &v }

func labels(app string) map[string]string { return map[string]string{"app": app} }

// deployment returns a Deployment of image with the given replicas.
func deployment(name, image string, replicas int32, args []string, nodeSelector map[string]string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels(name)},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels(name)},
				Spec: corev1.PodSpec{
					NodeSelector:                  nodeSelector,
					TerminationGracePeriodSeconds: ptr(int64(1)),
					Containers: []corev1.Container{{
						Name: name, Image: image, Args: args, ImagePullPolicy: corev1.PullNever,
					}},
				},
			},
		},
	}
}

// waitRunning waits until n pods labelled app=name are Running and returns
// them.
func waitRunning(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, name string, n int) []corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var pods []corev1.Pod
	for {
		list, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		if err == nil {
			pods = pods[:0]
			for _, p := range list.Items {
				if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
					pods = append(pods, p)
				}
			}
			if len(pods) >= n {
				return pods
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d of %d pods of %s Running: %v (last error %v)", len(pods), n, name, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestControlPlaneKwok runs etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler and kwok: a Deployment becomes Running on fake nodes, the
// server rejects invalid manifests, and Stop leaves nothing.
func TestControlPlaneKwok(t *testing.T) {
	privileged(t)
	cp := startControlPlane(t, Options{KwokNodes: 2})
	c := cp.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	start := time.Now()
	d := deployment("web", "meshbench.local/none:v1", 4, nil, map[string]string{"type": "kwok"})
	// Spreading is only a scoring preference without a constraint: once
	// (1 in about 20 runs) all four landed on one node.
	d.Spec.Template.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{
		MaxSkew: 1, TopologyKey: "kubernetes.io/hostname", WhenUnsatisfiable: corev1.DoNotSchedule,
		LabelSelector: &metav1.LabelSelector{MatchLabels: labels("web")},
	}}
	if _, err := c.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods := waitRunning(ctx, t, c, "default", "web", 4)
	t.Logf("deployment of 4 pods Running on kwok nodes in %v", time.Since(start).Round(time.Millisecond))
	nodes := map[string]bool{}
	for _, p := range pods {
		nodes[p.Spec.NodeName] = true
		if !ClusterCIDR.Contains(mustAddr(t, p.Status.PodIP)) {
			t.Errorf("pod %s IP %s outside %s", p.Name, p.Status.PodIP, ClusterCIDR)
		}
	}
	if len(nodes) != 2 {
		t.Errorf("pods on nodes %v, want both kwok nodes", nodes)
	}
	svc, err := c.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       corev1.ServiceSpec{Selector: labels("web"), Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ip := mustAddr(t, svc.Spec.ClusterIP); !ServiceCIDR.Contains(ip) {
		t.Errorf("ClusterIP %s outside %s", ip, ServiceCIDR)
	}

	invalid := []struct {
		name   string
		create func() error
	}{
		{"pod name with underscore", func() error {
			_, err := c.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "Bad_Name"},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}},
			}, metav1.CreateOptions{})
			return err
		}},
		{"pod without containers", func() error {
			_, err := c.CoreV1().Pods("default").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "empty"}}, metav1.CreateOptions{})
			return err
		}},
		{"service port 70000", func() error {
			_, err := c.CoreV1().Services("default").Create(ctx, &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: "bad"},
				Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 70000}}},
			}, metav1.CreateOptions{})
			return err
		}},
		{"deployment selector not matching template", func() error {
			d := deployment("mismatch", "x", 1, nil, nil)
			d.Spec.Selector.MatchLabels = labels("other")
			_, err := c.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{})
			return err
		}},
	}
	for _, tc := range invalid {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.create()
			if !apierrors.IsInvalid(err) {
				t.Fatalf("got %v, want 422 Invalid", err)
			}
			if code := err.(apierrors.APIStatus).Status().Code; code != 422 {
				t.Errorf("status code %d, want 422", code)
			}
		})
	}
}
