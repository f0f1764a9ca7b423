// Package kubeenv builds and runs a real Kubernetes control plane and node for meshbench's tests.
//
// # Binaries
//
// EnsureBinaries builds etcd (v3.7.3), kube-apiserver,
// kube-controller-manager, kube-scheduler, kubelet and kube-proxy
// (v1.37.2), kwok (v0.8.0) and a pause program from their Go modules, in
// scratch modules of their own (never meshbench's go.mod), into
// ${MESHBENCH_CACHE:-/var/cache/meshbench}/kube/<versions>/bin. It builds
// nothing when they are there; `make kube-bins` (go run
// ./internal/kubeenv/cmd/kube-bins) calls it before the tests.
//
// # Control plane
//
// StartControlPlane runs etcd (--unsafe-no-fsync), kube-apiserver (its own
// CA, a token for a system:masters user, Node and RBAC authorization,
// service-account keys, --endpoint-reconciler-type=none),
// kube-controller-manager, kube-scheduler and optionally kwok with fake
// nodes, all on 127.0.0.1 and under one run directory in os.TempDir().
// Every process is in the cgroup meshbench-<run>/cp and has SIGKILL as its
// parent-death signal; Stop stops them in reverse order (etcd last).
//
// # Nodes
//
// ControlPlane.AddNode runs a real node: Debian's containerd, runc and CNI
// bridge plugin, kubelet and kube-proxy (iptables mode). Each node lives in
// its own network namespace mb-<run>-k<i> (address 198.19.1.<i+1>, pods
// 198.18.<128+i>.0/24) and its own mount namespace, where /run, /var/lib
// and /var/log are private tmpfs; nodes are joined by a bridge in the
// namespace mb-<run>-kfab, which routes between their pod ranges. So
// kubelet's and kube-proxy's iptables chains, the CNI bridge and veths,
// container mounts and the fixed paths kubelet and containerd use never
// touch the host, and vanish with the node's processes. Nodes reach the API
// server through a relay listening on 127.0.0.1:6443 inside their
// namespace; the API server reaches kubelets and pods (logs, exec,
// port-forward, proxy) through an HTTP CONNECT proxy on a unix socket that
// dials from the fabric namespace (its egress selector). Nothing is added
// to the host's network. Images need no registry: BuildImage packages a
// static binary with go-containerregistry and Node.ImportImage imports it.
//
// # What changes on the host, and how it is restored
//
// Besides its run directory, cgroups (meshbench-<run>/...) and named
// network namespaces, which Stop removes, the environment changes only the
// host-wide sysctls kubelet sets at start (vm.overcommit_memory,
// vm.panic_on_oom, kernel.panic, kernel.panic_on_oops,
// kernel.keys.root_maxkeys, kernel.keys.root_maxbytes). The first node
// saves them (also to the run directory) and Stop restores them. If the
// process dies without Stop, the parent-death signal kills the processes
// it started, and Down removes the rest (containers and shims, cgroups,
// namespaces, directory) and restores the sysctls. SnapshotHost records
// everything the environment could change, for tests to compare before and
// after.
//
// Every address handed to any software is inside 198.18.0.0/15, apart from
// the embedded testbed's ranges: pods 198.18.128.0/17, Services
// 198.19.64.0/18, nodes 198.19.1.0/24.
package kubeenv
