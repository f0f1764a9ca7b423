package kube

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PodInfo is what the harness needs of a running pod.
type PodInfo struct {
	Name, App, Node, IP, UID string
}

// PodError says why a pod cannot become ready.
type PodError struct {
	Namespace, Pod, Container, Image string
	Reason, Message                  string
}

func (e *PodError) Error() string {
	s := fmt.Sprintf("pod %s/%s", e.Namespace, e.Pod)
	if e.Container != "" {
		s += fmt.Sprintf(" container %s", e.Container)
	}
	if e.Image != "" {
		s += fmt.Sprintf(" (image %s)", e.Image)
	}
	s += ": " + e.Reason
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// fatalWaiting are container states that do not resolve by waiting: the
// image cannot be had, or the container keeps failing.
var fatalWaiting = []string{
	"ErrImageNeverPull", "InvalidImageName", "ImagePullBackOff",
	"CrashLoopBackOff", "CreateContainerConfigError", "RunContainerError",
}

// WaitReady waits until every app has its replicas Running and Ready (only
// Running, for an app that is ReadyLater), and
// returns their pods sorted by app and name. It fails at once, naming the
// pod, container, image and reason, when a container is in a state that
// waiting does not cure (an image that cannot be pulled, a crash loop),
// and at ctx's end with the state of every pod not ready yet. progress,
// when not nil, is called whenever the count of ready pods changes.
func (n *Namespace) WaitReady(ctx context.Context, apps []App, progress func(ready, want int)) ([]PodInfo, error) {
	want := 0
	names := map[string]int32{}
	probedLater := map[string]bool{}
	for _, a := range apps {
		want += int(a.Replicas)
		names[a.Name] = a.Replicas
		probedLater[a.Name] = a.ReadyLater
	}
	last := -1
	var pending []string
	for {
		list, err := n.c.cs.CoreV1().Pods(n.Name).List(ctx, metav1.ListOptions{LabelSelector: RunLabel + "=" + n.RunID})
		if err != nil {
			if ctx.Err() != nil {
				return nil, n.timeout(ctx, want, last, pending)
			}
			return nil, fmt.Errorf("list pods in %s: %w", n.Name, err)
		}
		var ready []PodInfo
		pending = pending[:0]
		for i := range list.Items {
			p := &list.Items[i]
			app := p.Labels[AppLabel]
			if _, ok := names[app]; !ok || p.DeletionTimestamp != nil {
				continue
			}
			if perr := podFailure(p); perr != nil {
				return nil, perr
			}
			if podReady(p) || probedLater[app] && podRunning(p) {
				ready = append(ready, PodInfo{Name: p.Name, App: app, Node: p.Spec.NodeName, IP: p.Status.PodIP, UID: string(p.UID)})
			} else {
				pending = append(pending, describePending(p))
			}
		}
		if len(ready) != last {
			last = len(ready)
			if progress != nil {
				progress(min(last, want), want)
			}
		}
		if complete(ready, names) {
			sort.Slice(ready, func(i, j int) bool {
				if ready[i].App != ready[j].App {
					return ready[i].App < ready[j].App
				}
				return ready[i].Name < ready[j].Name
			})
			return ready, nil
		}
		select {
		case <-ctx.Done():
			return nil, n.timeout(ctx, want, last, pending)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (n *Namespace) timeout(ctx context.Context, want, ready int, pending []string) error {
	msg := fmt.Sprintf("%d of %d pods ready in %s", max(ready, 0), want, n.Name)
	if len(pending) > 0 {
		slices.Sort(pending)
		msg += "; not ready: " + strings.Join(pending, "; ")
	}
	return fmt.Errorf("%s: %w", msg, context.Cause(ctx))
}

func complete(ready []PodInfo, want map[string]int32) bool {
	have := map[string]int32{}
	for _, p := range ready {
		have[p.App]++
	}
	for app, n := range want {
		if have[app] < n {
			return false
		}
	}
	return true
}

func podReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podRunning reports whether p runs with every container started.
func podRunning(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" || len(p.Status.ContainerStatuses) == 0 {
		return false
	}
	for _, c := range p.Status.ContainerStatuses {
		if c.State.Running == nil || c.Started == nil || !*c.Started {
			return false
		}
	}
	return true
}

// podFailure returns why p cannot become ready, or nil if it may still.
func podFailure(p *corev1.Pod) *PodError {
	if p.Status.Phase == corev1.PodFailed {
		return &PodError{Namespace: p.Namespace, Pod: p.Name, Reason: "pod failed " + p.Status.Reason, Message: p.Status.Message}
	}
	for _, cs := range append(slices.Clone(p.Status.InitContainerStatuses), p.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil && slices.Contains(fatalWaiting, w.Reason) {
			return &PodError{Namespace: p.Namespace, Pod: p.Name, Container: cs.Name, Image: cs.Image, Reason: w.Reason, Message: w.Message}
		}
	}
	return nil
}

// describePending says where a pod is on its way to ready.
func describePending(p *corev1.Pod) string {
	s := p.Name + " " + string(p.Status.Phase)
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return s + " unscheduled: " + strings.TrimSpace(c.Reason+" "+c.Message)
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			return s + " " + cs.Name + " waiting: " + strings.TrimSpace(w.Reason+" "+w.Message)
		}
	}
	if p.Status.Phase == corev1.PodRunning {
		return s + " not ready"
	}
	return s
}
