package kube

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

const (
	// RunLabel carries the run id on every object the provider creates.
	RunLabel = "meshbench.io/run"
	// ManagedByLabel marks them as meshbench's.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	managedBy      = "meshbench"
)

var runIDRe = regexp.MustCompile(`^[0-9a-f]{1,16}$`)

// NamespaceName is the namespace of a run.
func NamespaceName(runID string) string { return "meshbench-" + runID }

// Namespace is a run's namespace.
type Namespace struct {
	c     *Client
	Name  string
	RunID string
}

// CreateNamespace creates meshbench-<runID>, labelled with the run id. It
// fails if the namespace exists: a run never adopts objects it did not
// create.
func (c *Client) CreateNamespace(ctx context.Context, runID string) (*Namespace, error) {
	if !runIDRe.MatchString(runID) {
		return nil, fmt.Errorf("run id %q: want lower-case hex digits", runID)
	}
	name := NamespaceName(runID)
	_, err := c.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   name,
		Labels: map[string]string{RunLabel: runID, ManagedByLabel: managedBy},
	}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("namespace %s exists already: another run uses it, or one left it behind (`meshbench down --run %s`)", name, runID)
	}
	if err != nil {
		return nil, fmt.Errorf("create namespace %s: %w", name, err)
	}
	c.log.Info("namespace created", "namespace", name)
	return &Namespace{c: c, Name: name, RunID: runID}, nil
}

// Delete deletes the namespace and waits until the server has removed it
// and everything in it, or ctx ends.
func (n *Namespace) Delete(ctx context.Context) error {
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := n.deleteWorkloads(wctx)
	cancel()
	n.c.log.Debug("namespace's pods gone", "namespace", n.Name, "took", time.Since(start).Round(time.Millisecond))
	if err != nil {
		n.c.log.Warn("deleting the namespace's workloads first failed; deleting the namespace", "namespace", n.Name, "err", err)
	}
	return n.c.deleteNamespace(ctx, n.Name)
}

// deleteWorkloads deletes the namespace's Deployments, DaemonSets, pods and
// Services and waits until the pods are gone. Deleting the namespace with
// pods in it makes the namespace controller wait out their longest grace
// period (the agent's 10 s) before it looks again, however soon they end:
// a run's teardown went from about 12 s to 7.5 s.
func (n *Namespace) deleteWorkloads(ctx context.Context) error {
	bg := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{PropagationPolicy: &bg}
	sel := metav1.ListOptions{LabelSelector: RunLabel + "=" + n.RunID}
	apps := n.c.cs.AppsV1()
	if err := apps.Deployments(n.Name).DeleteCollection(ctx, opts, sel); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete deployments: %w", err)
	}
	if err := apps.DaemonSets(n.Name).DeleteCollection(ctx, opts, sel); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete daemonsets: %w", err)
	}
	// The Deployments' ReplicaSets too (they carry the pods' labels), or
	// they would replace the pods deleted below until the garbage
	// collector got to them.
	if err := apps.ReplicaSets(n.Name).DeleteCollection(ctx, opts, sel); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete replicasets: %w", err)
	}
	if err := n.c.cs.CoreV1().Pods(n.Name).DeleteCollection(ctx, metav1.DeleteOptions{}, sel); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete pods: %w", err)
	}
	svcs, err := n.c.cs.CoreV1().Services(n.Name).List(ctx, sel)
	if err != nil {
		return fmt.Errorf("list services: %w", err)
	}
	for _, svc := range svcs.Items {
		if err := n.c.cs.CoreV1().Services(n.Name).Delete(ctx, svc.Name, opts); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete service %s: %w", svc.Name, err)
		}
	}
	return wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		l, err := n.c.cs.CoreV1().Pods(n.Name).List(ctx, sel)
		return err == nil && len(l.Items) == 0, nil
	})
}

func (c *Client) deleteNamespace(ctx context.Context, name string) error {
	// Even empty, a namespace takes about 5.4 s to go here: the namespace
	// controller waits a fixed grace period after the deletion event.
	fg := metav1.DeletePropagationForeground
	err := c.cs.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &fg})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete namespace %s: %w", name, err)
	}
	err = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := c.cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("namespace %s still terminating: %w", name, err)
	}
	c.log.Info("namespace deleted", "namespace", name)
	return nil
}

// Down deletes the namespaces of runID's run, or of every meshbench run
// when runID is "", and waits for them to go. It returns their names.
func (c *Client) Down(ctx context.Context, runID string) ([]string, error) {
	sel := ManagedByLabel + "=" + managedBy
	if runID != "" {
		sel += "," + RunLabel + "=" + runID
	}
	list, err := c.cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("list namespaces (%s): %w", sel, err)
	}
	var removed []string
	var errs []error
	for _, ns := range list.Items {
		if err := c.deleteNamespace(ctx, ns.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "namespace "+ns.Name)
	}
	return removed, errors.Join(errs...)
}
