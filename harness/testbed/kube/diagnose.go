package kube

import (
	"context"
	"errors"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Diagnose checks what `meshbench bench --provider kube` needs of the
// cluster opts names, for `meshbench doctor --provider kube`: the API
// server answers, the user has every permission in Permissions, and at
// least one node can run the run's pods. It returns one line per finding,
// and an error joining the problems.
func Diagnose(ctx context.Context, opts Options) ([]string, error) {
	c, err := Connect(ctx, opts)
	if err != nil {
		return nil, err
	}
	lines := []string{fmt.Sprintf("kube: API server %s, Kubernetes %s", c.Server(), c.Version())}
	var errs []error
	switch err := c.CheckAccess(ctx, NamespaceName("doctor")); {
	case err == nil:
		lines = append(lines, fmt.Sprintf("kube: permissions: all %d a run needs are granted", len(Permissions)))
	default:
		var missing *MissingPermissionsError
		if errors.As(err, &missing) {
			lines = append(lines, fmt.Sprintf("kube: permissions: %d of %d missing", len(missing.Missing), len(Permissions)))
		}
		errs = append(errs, err)
	}
	nodes, err := c.schedulableNodes(ctx)
	if err != nil {
		return lines, errors.Join(append(errs, err)...)
	}
	all, err := c.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return lines, errors.Join(append(errs, err)...)
	}
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Name
	}
	lines = append(lines, fmt.Sprintf("kube: nodes: %d of %d can run the run's pods (Ready, schedulable, not kwok's): %s",
		len(nodes), len(all.Items), strings.Join(names, ", ")))
	if len(nodes) == 0 {
		errs = append(errs, fmt.Errorf("kube: no node can run the run's pods (of %d nodes, none is Ready, schedulable, untainted and real)", len(all.Items)))
	}
	return lines, errors.Join(errs...)
}
