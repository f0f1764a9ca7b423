// Package kind is the kind provider: it creates a kind cluster (Kubernetes
// nodes as Docker containers) for each cluster of a run and runs the kube
// provider on it.
//
// For each cluster it builds the meshbench image from a static meshbench
// in-process, creates a docker network of its own (labelled with the run
// id) on a subnet of the address plan, has kind create the cluster with
// its nodes on that network (KIND_EXPERIMENTAL_DOCKER_NETWORK; kind's own
// network would take a subnet from docker's pool, 172.16/12 or
// 192.168/16) and with pods and Services in 198.18.0.0/15, waits until
// every node is Ready, imports the image into every node's containerd,
// and runs the kube provider with the cluster's kubeconfig (written to a
// directory of the run's, never to the user's kubeconfig) and image pull
// policy Never. Destroy removes the run's namespace, the kind cluster, the
// network and the directory, in that order; Down finds what dead runs left
// by the network's labels. It uses kind's Go packages (sigs.k8s.io/kind),
// not the kind command, and the docker command line. See README.md.
package kind
