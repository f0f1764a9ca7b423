package kube

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// Endpoint is one address of a Service, as its EndpointSlices say.
type Endpoint struct {
	IP   string
	Pod  string
	Node string
	// Ready: the pod passes its readiness probe and is not terminating.
	Ready bool
}

// WatchEndpoints follows the EndpointSlices of the namespace's Service svc
// (an informer: one list, then a watch), and calls fn with the Service's
// whole endpoint set, sorted by IP, after the first sync and whenever it
// changes. It returns when the first set has been delivered, and keeps
// watching until ctx ends. The xDS control plane builds its endpoints
// from these calls, so a pod killed on Kubernetes leaves the mesh when
// the cluster's endpoints controller says so.
func (n *Namespace) WatchEndpoints(ctx context.Context, svc string, fn func([]Endpoint)) error {
	f := informers.NewSharedInformerFactoryWithOptions(n.c.cs, 0,
		informers.WithNamespace(n.Name),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = labels.Set{discoveryv1.LabelServiceName: svc}.String()
		}))
	inf := f.Discovery().V1().EndpointSlices()
	lister := inf.Lister()
	var mu sync.Mutex
	var last []Endpoint
	synced := false
	emit := func() {
		mu.Lock()
		defer mu.Unlock()
		if !synced {
			return
		}
		ss, err := lister.EndpointSlices(n.Name).List(labels.Everything())
		if err != nil {
			return
		}
		eps := merge(ss)
		if last != nil && slices.Equal(eps, last) {
			return
		}
		last = eps
		fn(eps)
	}
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { emit() },
		UpdateFunc: func(any, any) { emit() },
		DeleteFunc: func(any) { emit() },
	}
	if _, err := inf.Informer().AddEventHandler(h); err != nil {
		return fmt.Errorf("endpoint slices of %s/%s: %w", n.Name, svc, err)
	}
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		return fmt.Errorf("endpoint slices of %s/%s: not synced: %w", n.Name, svc, ctx.Err())
	}
	mu.Lock()
	synced = true
	mu.Unlock()
	emit()
	go func() { <-ctx.Done(); f.Shutdown() }()
	return nil
}

// merge flattens slices into one endpoint list, one entry per IP, sorted.
func merge(ss []*discoveryv1.EndpointSlice) []Endpoint {
	byIP := map[string]Endpoint{}
	for _, s := range ss {
		for _, e := range s.Endpoints {
			ready := e.Conditions.Ready == nil || *e.Conditions.Ready
			if e.Conditions.Terminating != nil && *e.Conditions.Terminating {
				ready = false
			}
			ep := Endpoint{Ready: ready}
			if e.TargetRef != nil && e.TargetRef.Kind == "Pod" {
				ep.Pod = e.TargetRef.Name
			}
			if e.NodeName != nil {
				ep.Node = *e.NodeName
			}
			for _, a := range e.Addresses {
				ep.IP = a
				if old, ok := byIP[a]; ok && old.Ready {
					continue
				}
				byIP[a] = ep
			}
		}
	}
	out := make([]Endpoint, 0, len(byIP))
	for _, e := range byIP {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Endpoint) int { return strings.Compare(a.IP, b.IP) })
	return out
}
