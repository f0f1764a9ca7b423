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
	return n.c.deleteNamespace(ctx, n.Name)
}

func (c *Client) deleteNamespace(ctx context.Context, name string) error {
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
