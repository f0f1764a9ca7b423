// Package kube is the Kubernetes side of the kube provider: the work it
// does through the API server, on any cluster a kubeconfig reaches.
//
// It connects (and says clearly when the server cannot be reached), checks
// with SelfSubjectAccessReview that the user holds every permission a run
// needs, works only inside its own namespace meshbench-<run> (labelled
// with the run id, so Down finds what a dead run left), turns the
// testbed's cluster spec into Deployments and Services, waits for their
// pods with progress and with errors that name the pod, container, image
// and reason when they cannot start, and watches EndpointSlices for the
// xDS control plane.
//
// What runs on the nodes (the agent that resolves pods to their netns,
// cgroup and veth, and performs the datapaths' node-local work) is not in
// this package.
package kube
