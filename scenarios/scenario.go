package scenarios

import "time"

// Scenario is one scenario file: what to build, which datapaths to compare
// and the load to drive through each.
type Scenario struct {
	// Name identifies the scenario in reports; default: the file's base name.
	Name string `yaml:"name" json:"name"`
	// Description is free text shown in reports.
	Description string `yaml:"description" json:"description,omitempty"`
	// Topology is the cluster every datapath runs on.
	Topology Topology `yaml:"topology" json:"topology"`
	// Datapaths to compare, in order, each one of KnownDatapaths; default
	// ["none"].
	Datapaths []string `yaml:"datapaths" json:"datapaths"`
	// Load is the load every step drives through the datapath.
	Load Load `yaml:"load" json:"load"`
	// Repetitions of every datapath × rate step (1..100); default 1.
	Repetitions int `yaml:"repetitions" json:"repetitions"`
	// Chaos is the fault timeline applied during every measured step.
	Chaos []ChaosEntry `yaml:"chaos" json:"chaos,omitempty"`
	// NodeProxy configures the nodeproxy datapath.
	NodeProxy NodeProxy `yaml:"nodeproxy" json:"nodeproxy"`
	// Provider builds the cluster, one of KnownProviders; default "netns"
	// (the embedded testbed). `meshbench bench --provider` overrides it.
	Provider string `yaml:"provider" json:"provider"`
}

// KnownProviders are the cluster providers a scenario may name: the
// embedded network-namespace testbed, any Kubernetes cluster reached by a
// kubeconfig, and a kind cluster (Kubernetes nodes as Docker containers)
// created for each datapath and repetition.
var KnownProviders = []string{"netns", "kube", "kind"}

// Topology is the cluster to build.
type Topology struct {
	// Nodes is the number of nodes (1..16); default 2.
	Nodes int `yaml:"nodes" json:"nodes"`
	// PodsPerNode is the number of pods per node (1..64); default 2. Every
	// pod runs an echo server; pod 0 of node 0 also runs the load client.
	PodsPerNode int `yaml:"pods_per_node" json:"pods_per_node"`
	// Services select their replicas from the pods, round robin across
	// nodes starting at the node after the client's, so that traffic
	// crosses nodes. Every replica takes one pod, and the client's pod
	// serves no service. Default: one service "echo" with one replica.
	Services []Service `yaml:"services" json:"services"`
}

// Service is a set of echo replicas behind one port.
type Service struct {
	// Name: lower-case letters, digits and '-', unique.
	Name string `yaml:"name" json:"name"`
	// Replicas (>= 1) must fit in the pods other than the client's;
	// default 1.
	Replicas int `yaml:"replicas" json:"replicas"`
	// Port the echo servers listen on (1..65535, not a port the harness
	// reserves); default 8080.
	Port int `yaml:"port" json:"port"`
	// Mesh configures proxy-based datapaths for this service (engine, LB
	// policy, circuit breakers, retries); the none datapath ignores it.
	Mesh MeshPolicy `yaml:"mesh" json:"mesh"`
	// ReadinessProbe is how the cluster notices that a replica stopped
	// serving, as a Kubernetes readinessProbe: the datapath's endpoints
	// change only when it says so (chaos pod-kill).
	ReadinessProbe Probe `yaml:"readiness_probe" json:"readiness_probe"`
}

// Probe is a readiness probe, in Kubernetes' terms: every Period it asks
// the replica's echo server whether it serves, waiting at most Timeout; after
// FailureThreshold failures in a row the replica is taken out of its
// service's endpoints, after SuccessThreshold successes in a row it is put
// back.
type Probe struct {
	// Period between probes (10ms..1m); default 1s.
	Period Duration `yaml:"period" json:"period"`
	// Timeout of one probe (> 0, at most Period); default the smaller of
	// 1s and Period.
	Timeout Duration `yaml:"timeout" json:"timeout"`
	// FailureThreshold and SuccessThreshold (1..100); default 1 each.
	FailureThreshold int `yaml:"failure_threshold" json:"failure_threshold"`
	SuccessThreshold int `yaml:"success_threshold" json:"success_threshold"`
}

// Load is the open-loop load of every step.
type Load struct {
	// Service to load; default: the first service.
	Service string `yaml:"service" json:"service"`
	// Rates are the offered rates in requests per second (1..200000, no
	// duplicates), one step each, in order. Required.
	Rates []int `yaml:"rates" json:"rates"`
	// Duration of each measured step (1s..1h); default 10s.
	Duration Duration `yaml:"duration" json:"duration"`
	// Warmup runs before each measured step at the same rate and is not
	// measured (0..10m); default 2s.
	Warmup Duration `yaml:"warmup" json:"warmup"`
	// Connections is the number of persistent connections the client
	// keeps, in all, spread over its targets (1..1024); default 8. A
	// request waits for a free one, and the wait counts in its latency.
	Connections int `yaml:"connections" json:"connections"`
	// RequestSize and ResponseSize are body sizes in bytes (64, "32KiB";
	// 0..16MiB); default 64.
	RequestSize  ByteSize `yaml:"request_size" json:"request_size"`
	ResponseSize ByteSize `yaml:"response_size" json:"response_size"`
	// KeepAlive reuses HTTP/1.1 connections; default true.
	KeepAlive *bool `yaml:"keep_alive" json:"keep_alive"`
	// Timeout of each request (> 0, <= 60s); default 2s.
	Timeout Duration `yaml:"timeout" json:"timeout"`
	// Calibrate runs the client-floor calibration step first; default true.
	Calibrate *bool `yaml:"calibrate" json:"calibrate"`
	// PacerSpin is how long before each send the client's pacer stops
	// sleeping and spins, for an accurate send time (0s: never; at most
	// 1ms, and a quarter of the interval); default DefaultPacerSpin.
	PacerSpin Duration `yaml:"pacer_spin" json:"pacer_spin"`
	// KernelTimestamps asks the kernel to timestamp the client's requests
	// and responses (SO_TIMESTAMPING), for the kernel-side latency next to
	// the client's; default true.
	KernelTimestamps *bool `yaml:"kernel_timestamps" json:"kernel_timestamps"`
}

// Duration is a time.Duration written as a Go duration string ("10s") in
// YAML and JSON.
type Duration time.Duration

// ByteSize is a size in bytes written as an integer or with a unit suffix
// (B, KB, KiB, MB, MiB, GB, GiB) in YAML; it is an integer in JSON.
type ByteSize int64
