package kube

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// AppLabel names the app a pod belongs to (its Deployment's name).
const AppLabel = "app.kubernetes.io/name"

// App is one Deployment: the load client, or one scenario service's echo
// replicas with their Service.
type App struct {
	// Name is the Deployment's (and Service's) name: a DNS label.
	Name     string
	Replicas int32
	// Args is the container's command line; Args[0] is the program in the
	// image.
	Args []string
	// Port, when non-zero, is served by the pods and exposed by a
	// ClusterIP Service of the same name.
	Port int32
	// Nodes the pods may run on; empty: any. Replicas are spread evenly
	// over them (at most one more on any node than on another).
	Nodes []string
	// Readiness, when set, is the pods' readiness probe (an HTTP GET of
	// its Path on its Port, or a TCP connect to Port): Kubernetes takes a
	// pod out of the Service's endpoints when it fails.
	Readiness *Probe
	// ReadyLater: what the probe checks is started in the pods later (the
	// harness's echo servers), so WaitReady waits for them to run, not to
	// be ready.
	ReadyLater bool
	// Labels are added to the pods' (for example ServiceLabel, which a
	// Service of several apps selects).
	Labels map[string]string
}

// ServiceLabel marks the pods a scenario service's Service selects: the
// testbed's pods are one Deployment each, and a service spans several.
const ServiceLabel = "meshbench.io/service"

// Probe mirrors the scenario's readiness_probe. Kubernetes counts its
// period and timeout in whole seconds (at least 1): shorter ones are
// rounded up.
type Probe struct {
	Period, Timeout                    time.Duration
	FailureThreshold, SuccessThreshold int32
	// Port and Path: an HTTP GET of Path on Port; Path "": a TCP connect
	// to Port; Port 0: the app's Port.
	Port int32
	Path string
}

// Image says which image the pods run and how the kubelet gets it.
type Image struct {
	Ref string
	// PullPolicy: IfNotPresent by default; Never for an image loaded into
	// the nodes (kind load, ctr import).
	PullPolicy corev1.PullPolicy
}

func (n *Namespace) labels(app string) map[string]string {
	return map[string]string{AppLabel: app, RunLabel: n.RunID, ManagedByLabel: managedBy}
}

// Deployment returns app's Deployment in the namespace.
func (n *Namespace) Deployment(app App, img Image) *appsv1.Deployment {
	pull := img.PullPolicy
	if pull == "" {
		pull = corev1.PullIfNotPresent
	}
	sel := map[string]string{AppLabel: app.Name, RunLabel: n.RunID}
	c := corev1.Container{
		Name:            app.Name,
		Image:           img.Ref,
		ImagePullPolicy: pull,
		Command:         app.Args[:1],
		Args:            app.Args[1:],
	}
	if app.Port != 0 {
		c.Ports = []corev1.ContainerPort{{Name: "serve", ContainerPort: app.Port, Protocol: corev1.ProtocolTCP}}
	}
	if p := app.Readiness; p != nil && (p.Port != 0 || app.Port != 0) {
		port := p.Port
		if port == 0 {
			port = app.Port
		}
		h := corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(port)}}
		if p.Path != "" {
			h = corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: p.Path, Port: intstr.FromInt32(port)}}
		}
		c.ReadinessProbe = &corev1.Probe{
			ProbeHandler:     h,
			PeriodSeconds:    seconds(p.Period),
			TimeoutSeconds:   seconds(p.Timeout),
			FailureThreshold: p.FailureThreshold,
			SuccessThreshold: p.SuccessThreshold,
		}
	}
	spec := corev1.PodSpec{
		Containers:                    []corev1.Container{c},
		TerminationGracePeriodSeconds: ptr(int64(1)),
		EnableServiceLinks:            ptr(false),
		AutomountServiceAccountToken:  ptr(false),
	}
	if len(app.Nodes) > 0 {
		spec.Affinity = onNodes(app.Nodes)
		spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{
			MaxSkew:           1,
			TopologyKey:       corev1.LabelHostname,
			WhenUnsatisfiable: corev1.DoNotSchedule,
			LabelSelector:     &metav1.LabelSelector{MatchLabels: sel},
		}}
	}
	podLabels := n.labels(app.Name)
	maps.Copy(podLabels, app.Labels)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: app.Name, Namespace: n.Name, Labels: n.labels(app.Name)},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(app.Replicas),
			Selector: &metav1.LabelSelector{MatchLabels: sel},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec:       spec,
			},
		},
	}
}

// onNodes requires the named nodes (by their hostname label).
func onNodes(nodes []string) *corev1.Affinity {
	return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
				Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: nodes,
			}}}},
		},
	}}
}

// Service returns app's ClusterIP Service, or nil when app serves no port.
func (n *Namespace) Service(app App) *corev1.Service {
	if app.Port == 0 {
		return nil
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: app.Name, Namespace: n.Name, Labels: n.labels(app.Name)},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: map[string]string{AppLabel: app.Name, RunLabel: n.RunID},
			Ports: []corev1.ServicePort{{
				Name: "serve", Port: app.Port, TargetPort: intstr.FromString("serve"), Protocol: corev1.ProtocolTCP,
			}},
		},
	}
}

// CreateService creates a ClusterIP Service named name that selects the
// pods labelled ServiceLabel=name and forwards port to the same port, and
// returns its cluster IP.
func (n *Namespace) CreateService(ctx context.Context, name string, port int32) (netip.Addr, error) {
	svc, err := n.c.cs.CoreV1().Services(n.Name).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: n.Name, Labels: n.labels(name)},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: map[string]string{ServiceLabel: name, RunLabel: n.RunID},
			Ports: []corev1.ServicePort{{
				Name: "serve", Port: port, TargetPort: intstr.FromInt32(port), Protocol: corev1.ProtocolTCP,
			}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("create service %s/%s: %w", n.Name, name, err)
	}
	ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("service %s/%s: cluster IP %q: %w", n.Name, name, svc.Spec.ClusterIP, err)
	}
	return ip, nil
}

// Create creates the apps' Deployments and Services. The API server
// validates them; its error names the object.
func (n *Namespace) Create(ctx context.Context, img Image, apps ...App) error {
	for _, app := range apps {
		if len(app.Args) == 0 {
			return fmt.Errorf("app %s: no command", app.Name)
		}
		if _, err := n.c.cs.AppsV1().Deployments(n.Name).Create(ctx, n.Deployment(app, img), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create deployment %s/%s: %w", n.Name, app.Name, err)
		}
		if svc := n.Service(app); svc != nil {
			if _, err := n.c.cs.CoreV1().Services(n.Name).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("create service %s/%s: %w", n.Name, app.Name, err)
			}
		}
	}
	return nil
}

func seconds(d time.Duration) int32 {
	s := int32((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

func ptr[T any](v T) *T { return &v }
