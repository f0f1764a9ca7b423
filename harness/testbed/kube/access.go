package kube

import (
	"context"
	"fmt"
	"strings"

	authv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Permission is one verb on one resource that a run needs.
type Permission struct {
	Group       string // "" for the core group
	Resource    string
	Subresource string
	Verb        string
	// Namespaced permissions are needed only in the run's namespace;
	// the others cluster-wide.
	Namespaced bool
	// Why is shown when the permission is missing.
	Why string
}

func (p Permission) String() string {
	r := p.Resource
	if p.Subresource != "" {
		r += "/" + p.Subresource
	}
	if p.Group != "" {
		r += "." + p.Group
	}
	return p.Verb + " " + r
}

// Permissions lists what a run does through the API server, and why. The
// README's RBAC section is generated from the same list (see
// TestPermissionsDocumented).
var Permissions = []Permission{
	{Resource: "namespaces", Verb: "create", Why: "the run works in its own namespace meshbench-<run>"},
	{Resource: "namespaces", Verb: "delete", Why: "and removes it at the end"},
	{Resource: "namespaces", Verb: "list", Why: "`meshbench down` finds the namespaces of dead runs by label"},
	{Resource: "nodes", Verb: "list", Why: "pods are placed on nodes, and results record their Kubernetes version"},
	{Group: "apps", Resource: "deployments", Verb: "create", Namespaced: true, Why: "the echo services and the load client"},
	{Group: "apps", Resource: "daemonsets", Verb: "create", Namespaced: true, Why: "the node agent"},
	{Resource: "secrets", Verb: "create", Namespaced: true, Why: "the token the harness and the node agents share"},
	{Resource: "services", Verb: "create", Namespaced: true, Why: "one Service per scenario service"},
	{Resource: "pods", Verb: "list", Namespaced: true, Why: "waiting for the pods, finding their nodes and IPs"},
	{Resource: "pods", Verb: "watch", Namespaced: true, Why: "waiting for the pods"},
	{Resource: "pods", Verb: "delete", Namespaced: true, Why: "teardown deletes the run's pods before its namespace, which then goes at once"},
	{Resource: "pods", Verb: "deletecollection", Namespaced: true, Why: "and deletes them together"},
	{Group: "apps", Resource: "deployments", Verb: "deletecollection", Namespaced: true, Why: "with their Deployments"},
	{Group: "apps", Resource: "replicasets", Verb: "deletecollection", Namespaced: true, Why: "and ReplicaSets"},
	{Group: "apps", Resource: "daemonsets", Verb: "deletecollection", Namespaced: true, Why: "and the agent's DaemonSet"},
	{Resource: "services", Verb: "list", Namespaced: true, Why: "and finds its Services"},
	{Resource: "services", Verb: "delete", Namespaced: true, Why: "to delete them"},
	{Resource: "pods", Subresource: "portforward", Verb: "create", Namespaced: true, Why: "the harness reaches the node agents through the API server"},
	{Resource: "pods", Subresource: "log", Verb: "get", Namespaced: true, Why: "a pod that fails is reported with the end of its log"},
	{Resource: "events", Verb: "list", Namespaced: true, Why: "a pod that cannot start is reported with its events"},
	{Group: "discovery.k8s.io", Resource: "endpointslices", Verb: "list", Namespaced: true, Why: "the xDS control plane takes endpoints from EndpointSlices"},
	{Group: "discovery.k8s.io", Resource: "endpointslices", Verb: "watch", Namespaced: true, Why: "and follows them"},
}

// MissingPermissionsError lists what the user may not do.
type MissingPermissionsError struct {
	Namespace string
	Missing   []Permission
}

func (e *MissingPermissionsError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "missing %d RBAC permission(s) for the run in namespace %s:", len(e.Missing), e.Namespace)
	for _, p := range e.Missing {
		where := "cluster-wide"
		if p.Namespaced {
			where = "in " + e.Namespace
		}
		fmt.Fprintf(&b, "\n  %s (%s): %s", p, where, p.Why)
	}
	return b.String()
}

// CheckAccess asks the API server, with one SelfSubjectAccessReview per
// permission, whether the client's user may do everything a run in
// namespace ns does. It returns a *MissingPermissionsError naming every
// permission denied.
func (c *Client) CheckAccess(ctx context.Context, ns string) error {
	var missing []Permission
	for _, p := range Permissions {
		attr := &authv1.ResourceAttributes{
			Group: p.Group, Resource: p.Resource, Subresource: p.Subresource, Verb: p.Verb,
		}
		if p.Namespaced {
			attr.Namespace = ns
		}
		r, err := c.cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx,
			&authv1.SelfSubjectAccessReview{Spec: authv1.SelfSubjectAccessReviewSpec{ResourceAttributes: attr}},
			metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("checking %s: %w", p, err)
		}
		if !r.Status.Allowed {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return &MissingPermissionsError{Namespace: ns, Missing: missing}
	}
	return nil
}
