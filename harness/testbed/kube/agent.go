package kube

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

const (
	// AgentName is the agent DaemonSet's name.
	AgentName = "meshbench-agent"
	// AgentPort is the loopback port the agent serves on, in the node's
	// network namespace (hostNetwork); only port-forward reaches it.
	AgentPort     = 15080
	agentTokenKey = "token"
)

// AgentDaemonSet returns the node agent's DaemonSet: privileged, with the
// node's PID namespace and network, and the node's root filesystem at
// /host (whose iptables, tc and ip the agent runs). The token comes from
// the Secret of the same name.
func (n *Namespace) AgentDaemonSet(img Image) *appsv1.DaemonSet {
	pull := img.PullPolicy
	if pull == "" {
		pull = corev1.PullIfNotPresent
	}
	sel := map[string]string{AppLabel: AgentName, RunLabel: n.RunID}
	hostPathDir := corev1.HostPathDirectory
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: AgentName, Namespace: n.Name, Labels: n.labels(AgentName)},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: sel},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: n.labels(AgentName)},
				Spec: corev1.PodSpec{
					HostNetwork:                   true,
					HostPID:                       true,
					TerminationGracePeriodSeconds: ptr(int64(10)),
					AutomountServiceAccountToken:  ptr(false),
					EnableServiceLinks:            ptr(false),
					Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					Containers: []corev1.Container{{
						Name:            "agent",
						Image:           img.Ref,
						ImagePullPolicy: pull,
						Command:         []string{"/meshbench", "agent"},
						Args: []string{
							"--listen", "127.0.0.1:" + strconv.Itoa(AgentPort),
							"--host-root", "/host",
							"--token-file", "/etc/meshbench-agent/" + agentTokenKey,
							"--run", n.RunID,
						},
						SecurityContext: &corev1.SecurityContext{Privileged: ptr(true)},
						VolumeMounts: []corev1.VolumeMount{
							{Name: "host", MountPath: "/host"},
							{Name: "token", MountPath: "/etc/meshbench-agent", ReadOnly: true},
						},
					}},
					Volumes: []corev1.Volume{
						{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/", Type: &hostPathDir}}},
						{Name: "token", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: AgentName}}},
					},
				},
			},
		},
	}
}

// CreateAgent creates the token Secret and the agent DaemonSet, on every
// node, or on those named in nodes when there are any.
func (n *Namespace) CreateAgent(ctx context.Context, img Image, token string, nodes ...string) error {
	_, err := n.c.cs.CoreV1().Secrets(n.Name).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: AgentName, Namespace: n.Name, Labels: n.labels(AgentName)},
		Data:       map[string][]byte{agentTokenKey: []byte(token)},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create secret %s/%s: %w", n.Name, AgentName, err)
	}
	ds := n.AgentDaemonSet(img)
	if len(nodes) > 0 {
		ds.Spec.Template.Spec.Affinity = onNodes(nodes)
	}
	if _, err := n.c.cs.AppsV1().DaemonSets(n.Name).Create(ctx, ds, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create daemonset %s/%s: %w", n.Name, AgentName, err)
	}
	return nil
}

// PortForward forwards a loopback port of this machine to port of the
// pod, through the API server (and the pod's kubelet). It returns the
// local address and a function that ends the forward.
func (n *Namespace) PortForward(ctx context.Context, pod string, port int) (addr string, stop func(), err error) {
	cfg := n.c.Config()
	rt, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return "", nil, err
	}
	u, err := url.Parse(cfg.Host)
	if err != nil {
		return "", nil, err
	}
	u.Path = fmt.Sprintf("/api/v1/namespaces/%s/pods/%s/portforward", n.Name, pod)
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: rt}, http.MethodPost, u)
	stopc, ready := make(chan struct{}), make(chan struct{})
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("0:%d", port)}, stopc, ready, io.Discard, io.Discard)
	if err != nil {
		return "", nil, fmt.Errorf("port-forward to %s/%s:%d: %w", n.Name, pod, port, err)
	}
	errc := make(chan error, 1)
	go func() { errc <- fw.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-errc:
		return "", nil, fmt.Errorf("port-forward to %s/%s:%d: %w", n.Name, pod, port, err)
	case <-ctx.Done():
		close(stopc)
		return "", nil, ctx.Err()
	}
	ports, err := fw.GetPorts()
	if err != nil || len(ports) != 1 {
		close(stopc)
		return "", nil, fmt.Errorf("port-forward to %s/%s:%d: %v", n.Name, pod, port, err)
	}
	return fmt.Sprintf("127.0.0.1:%d", ports[0].Local), func() { close(stopc) }, nil
}
