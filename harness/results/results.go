package results

import (
	"encoding/json"
	"time"
)

// Schema is the value of Run.Schema for files this version writes. A reader
// refuses any other value.
const Schema = "meshbench/v1"

// Run statuses.
const (
	StatusRunning     = "running"     // the run is still going (a partial file)
	StatusOK          = "ok"          // every step ran and proved its path
	StatusFailed      = "failed"      // a step failed; Error says why
	StatusInterrupted = "interrupted" // stopped by a signal; what was measured is kept
)

// Run is the whole content of a results.json file.
type Run struct {
	Schema      string       `json:"schema"`
	ID          string       `json:"id"`
	Status      string       `json:"status"`
	Error       string       `json:"error,omitempty"`
	Started     time.Time    `json:"started"`
	Finished    time.Time    `json:"finished,omitzero"`
	Environment Environment  `json:"environment"`
	Scenario    ScenarioCopy `json:"scenario"`
	// Calibration is the load client's own floor on this machine: the same
	// client against an echo server in its own pod, over loopback.
	Calibration *Step `json:"calibration,omitempty"`
	// RepetitionOrder says how the runner ordered repetitions:
	// OrderInterleaved (repetition 1 of every datapath, then repetition 2
	// …), or empty for files written before it was recorded, whose
	// repetitions of a datapath ran back to back.
	RepetitionOrder string `json:"repetition_order,omitempty"`
	// Steps holds one record per datapath × offered rate × repetition, in
	// the order they ran (Step.Sequence and Step.Started make it explicit).
	Steps []Step `json:"steps"`
	// Summaries aggregates Steps over repetitions: one per datapath × rate.
	Summaries []Summary `json:"summaries"`
}

// OrderInterleaved is Run.RepetitionOrder when the runner ran repetition 1
// of every datapath, then repetition 2 of every datapath, and so on, so
// that drift of the machine over the run spreads over all datapaths.
const OrderInterleaved = "interleaved"

// Environment describes the machine a run was measured on.
type Environment struct {
	Hostname  string `json:"hostname"`
	Kernel    string `json:"kernel"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	CPUModel  string `json:"cpu_model"`
	Cores     int    `json:"cores"`
	MemoryMiB int64  `json:"memory_mib"`
	GoVersion string `json:"go_version"`
	// Commit is the meshbench commit the binary was built from ("unknown"
	// when it was built outside a checkout).
	Commit   string `json:"commit"`
	Version  string `json:"version"`
	Provider string `json:"provider"`
	// Cluster describes the Kubernetes cluster of a kube run (nil on the
	// embedded testbed, which runs on the machine described above).
	Cluster *Cluster `json:"cluster,omitempty"`
	// Noise is how noisy the machine was when the run began (nil in files
	// written before it was measured).
	Noise *Noise `json:"noise,omitempty"`
}

// Cluster describes a Kubernetes cluster a run used.
type Cluster struct {
	KubernetesVersion string `json:"kubernetes_version"`
	// Nodes are the nodes the run's pods ran on.
	Nodes []ClusterNode `json:"nodes"`
}

// ClusterNode describes one node of a Cluster, as its Node object and its
// node agent report it.
type ClusterNode struct {
	Name             string `json:"name"`
	Kernel           string `json:"kernel"`
	OSImage          string `json:"os_image"`
	ContainerRuntime string `json:"container_runtime"`
	Kubelet          string `json:"kubelet"`
	CPUs             int64  `json:"cpus"`
	MemoryMiB        int64  `json:"memory_mib"`
	// KubeProxyMode is "iptables" or "ipvs" as seen in the node's rules,
	// or "none seen" (nftables mode, a CNI's own service handling, or no
	// kube-proxy).
	KubeProxyMode string `json:"kube_proxy_mode"`
	// CNI is the network configuration the node's runtime uses (the first
	// file of /etc/cni/net.d) and its plugin types, in order.
	CNIConfig  string   `json:"cni_config"`
	CNIPlugins []string `json:"cni_plugins"`
}

// Noise is a fingerprint of the machine's noise, measured at the start of
// every run, so that a comparison can tell a quieter or noisier machine
// from a faster or slower datapath.
type Noise struct {
	// Timer is the timer wake-up probe: for each sleep length, how late
	// the kernel woke a thread that slept that long, over many sleeps.
	// On a VM this lateness (waking an idle vCPU) dominates open-loop
	// latency at moderate rates.
	Timer []TimerProbe `json:"timer,omitempty"`
	// CalibrationP50US and CalibrationP99US are the calibration step's
	// latency: the load client against its own pod's echo server (0 when
	// the run had no calibration).
	CalibrationP50US float64 `json:"calibration_p50_us,omitempty"`
	CalibrationP99US float64 `json:"calibration_p99_us,omitempty"`
}

// TimerProbe is how late sleeps of one length woke up.
type TimerProbe struct {
	SleepUS float64 `json:"sleep_us"`
	Samples int     `json:"samples"`
	// OvershootP50US and OvershootP99US are percentiles of the time
	// slept beyond SleepUS, in microseconds.
	OvershootP50US float64 `json:"overshoot_p50_us"`
	OvershootP99US float64 `json:"overshoot_p99_us"`
}

// ScenarioCopy keeps the scenario a run used, both as written and as
// resolved (with defaults filled in).
type ScenarioCopy struct {
	Path     string          `json:"path"`
	Source   string          `json:"source"`
	Resolved json.RawMessage `json:"resolved"`
}

// Step is one measured load step.
type Step struct {
	Datapath   string `json:"datapath"`
	Service    string `json:"service"`
	Repetition int    `json:"repetition"` // 1-based
	// Sequence is the step's place in the order the run measured its
	// steps (1-based; 0 in files written before it was recorded), and
	// Started when its load (warm-up included) began.
	Sequence int       `json:"sequence,omitempty"`
	Started  time.Time `json:"started,omitzero"`
	// OfferedRPS is the rate the open-loop client was asked to send at.
	OfferedRPS float64 `json:"offered_rps"`
	// AchievedRPS is successful responses per second of the measured window.
	AchievedRPS float64 `json:"achieved_rps"`
	// SentRPS is requests actually sent per second of the measured window.
	SentRPS      float64          `json:"sent_rps"`
	Warmup       Duration         `json:"warmup"`
	Duration     Duration         `json:"duration"`
	Requests     int64            `json:"requests"`
	Successes    int64            `json:"successes"`
	SuccessRatio float64          `json:"success_ratio"`
	Errors       map[string]int64 `json:"errors,omitempty"`
	// LatencyUS is measured from each request's intended send time to the
	// end of its response, in microseconds, over the successful requests;
	// FailureLatencyUS the same over the failed ones.
	LatencyUS        Latency    `json:"latency_us"`
	Histogram        Histogram  `json:"histogram"`
	FailureLatencyUS *Latency   `json:"failure_latency_us,omitempty"`
	FailureHistogram *Histogram `json:"failure_histogram,omitempty"`
	// KernelLatencyUS is the kernel-side latency of the successes whose
	// request and response the kernel timestamped (KernelStamped of them):
	// from the request's last byte leaving the client's socket to the
	// response's last segment arriving at it. ClientOverheadUS is, per
	// such request, its latency less its kernel-side latency: what the
	// load client itself added. Both are absent when the kernel stamped
	// nothing (sk_msg redirects carry no packets to stamp).
	KernelStamped    int64      `json:"kernel_stamped"`
	KernelLatencyUS  *Latency   `json:"kernel_latency_us,omitempty"`
	KernelHistogram  *Histogram `json:"kernel_histogram,omitempty"`
	ClientOverheadUS *Latency   `json:"client_overhead_us,omitempty"`
	// Client is how the load client ran: whether it kept up and what it
	// was configured with.
	Client ClientRun `json:"client"`
	// Windows are fixed time buckets across the measured window, each
	// WindowS seconds wide.
	Windows []Window `json:"windows,omitempty"`
	WindowS float64  `json:"window_s,omitempty"`
	// Faults are the chaos timeline's faults, with their effect measured.
	Faults []FaultRecord `json:"faults,omitempty"`
	Proof  Proof         `json:"proof"`
	// DatapathMetrics are what the datapath measured about itself at
	// install (for example the control plane's push-to-ACK latency).
	DatapathMetrics map[string]float64 `json:"datapath_metrics,omitempty"`
	// EngineNotes are the settings of the mesh configuration the proxy
	// engine did not apply as configured, in its own words, distinct and
	// sorted (the haproxy engine's notes on what haproxy.cfg does not
	// render as in xDS); empty when it applied everything, for datapaths
	// without a proxy engine, and in results from before they were recorded.
	EngineNotes []string `json:"engine_notes,omitempty"`
	Cost        Cost     `json:"cost"`
	// Processes lists every process in the testbed's pods and nodes.
	Processes []Process `json:"processes,omitempty"`
	// Footprint is the memory the datapath holds besides its processes,
	// and what each pod adds to them, at the end of the step; nil when the
	// datapath reports none (it holds nothing its processes do not show).
	Footprint *Footprint `json:"footprint,omitempty"`
	// Interrupted is set when the step was cut short by a signal.
	Interrupted bool   `json:"interrupted,omitempty"`
	Error       string `json:"error,omitempty"`
}

// ClientRun is how the load client ran in a step.
type ClientRun struct {
	// SendLagUS is how late it sent each request after its intended time
	// (the pacer and the goroutine that sends).
	SendLagUS Latency `json:"send_lag_us"`
	// Connections is how many persistent connections it keeps in all;
	// ConnectionsOpened how many it dialled over the step, warm-up
	// included, and ConnectionsOpenedMeasured those of the measured
	// window. More than Connections means some broke (a fault, a server
	// closing them).
	Connections               int   `json:"connections"`
	ConnectionsOpened         int64 `json:"connections_opened"`
	ConnectionsOpenedMeasured int64 `json:"connections_opened_measured"`
	// OverheadPartsUS splits the client overhead (Step.ClientOverheadUS)
	// into its parts, in order: send_lag (intended time → the request
	// starts: the pacer, goroutine hand-off), to_socket (→ written: vegeta,
	// net/http's client, waiting for a free connection), to_wire (→ the
	// kernel stamps its last byte leaving: the client socket's own TCP/IP
	// send path and egress netfilter), from_wire (the kernel stamps the
	// response arriving → read: the TCP/IP receive path, the wake-up, the
	// read) and after_read (→ the result is handed over). to_wire and
	// from_wire are kernel work on the client's side that no client avoids.
	OverheadPartsUS map[string]Latency `json:"client_overhead_parts_us,omitempty"`
	// KernelStamps says whether it asked the kernel for timestamps;
	// PacerSpin how long before each send its pacer spun (0: never).
	KernelStamps bool     `json:"kernel_stamps"`
	PacerSpin    Duration `json:"pacer_spin"`
}

// Latency holds summary percentiles in microseconds.
type Latency struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// Histogram is a full latency histogram in sparse form. Each bucket counts
// the requests whose latency, in microseconds, was at most UpperUS and more
// than the previous bucket's UpperUS. Buckets are in ascending order.
type Histogram struct {
	SignificantFigures int      `json:"significant_figures"`
	Buckets            []Bucket `json:"buckets"`
}

// Bucket is one histogram bucket.
type Bucket struct {
	UpperUS int64 `json:"le_us"`
	Count   int64 `json:"count"`
}

// Window summarises one fixed time bucket of a step.
type Window struct {
	// StartS is seconds from the start of the measured window.
	StartS       float64 `json:"start_s"`
	Requests     int64   `json:"requests"`
	Successes    int64   `json:"successes"`
	SuccessRatio float64 `json:"success_ratio"`
	P50US        float64 `json:"p50_us"`
	P90US        float64 `json:"p90_us,omitempty"`
	P99US        float64 `json:"p99_us"`
}

// Proof is the datapath's own evidence that it carried the step's traffic:
// its counters over a window, held to rules that state the exact work the
// path must have done for the requests the load client counted.
type Proof struct {
	// Source says where the counters come from (for example "echo request
	// counters", "proxy /stats", "bpf map sockmap_counters").
	Source string `json:"source"`
	// Counters are the deltas over the window, by name, of the counters
	// that changed: a zero delta is left out (the checks saw it; at 512
	// sidecars, each with a counter set per endpoint, the zeros made the
	// results file 243 MB).
	Counters map[string]int64 `json:"counters"`
	// Checks are the rules the counters were held to, each with its figure.
	Checks []ProofCheck `json:"checks,omitempty"`
	// Verified is true when there is at least one check and every check
	// passed; Detail explains the checks in words either way.
	Verified bool   `json:"verified"`
	Detail   string `json:"detail"`
	// Inconclusive is set when a fault in the window restarted processes
	// whose counters the proof reads (chaos pod-kill or proxy-kill): the
	// checks could not hold, and the warm-up's proof stands for the path.
	Inconclusive bool `json:"inconclusive,omitempty"`
	// Warmup is the same proof over the warm-up window (nil without
	// warm-up). Faults start after it, so it is always conclusive.
	Warmup *Proof `json:"warmup,omitempty"`
}

// ProofCheck is one rule a proof's counters are held to.
type ProofCheck struct {
	// Name says what is checked ("sk_msg redirects per success").
	Name string `json:"name"`
	// Got is the measured figure and Want the rule it is held to, in
	// words (">= 1584", "600 ± 12").
	Got  float64 `json:"got"`
	Want string  `json:"want"`
	// Figure is Got as the report prints it ("4.0 sk_msg redirects/req").
	Figure string `json:"figure"`
	OK     bool   `json:"ok"`
	// Why gives the reason for the rule's tolerance.
	Why string `json:"why,omitempty"`
	// Detail names what failed, when something did.
	Detail string `json:"detail,omitempty"`
}

// Verify sets p.Verified from its checks: true when there is at least one
// and every one passed.
func (p *Proof) Verify() {
	p.Verified = len(p.Checks) > 0
	for _, c := range p.Checks {
		p.Verified = p.Verified && c.OK
	}
}

// Cost is the per-request cost of a step, summed over the testbed.
type Cost struct {
	// TCPInSegs and TCPOutSegs are summed over every namespace of the
	// testbed (/proc/net/snmp).
	TCPInSegs  int64 `json:"tcp_in_segs"`
	TCPOutSegs int64 `json:"tcp_out_segs"`
	// SegmentsPerRequest is (in + out) / requests.
	SegmentsPerRequest float64 `json:"segments_per_request"`
	// ContextSwitches is voluntary + involuntary switches of every process.
	ContextSwitches         int64   `json:"context_switches"`
	ContextSwitchesPerReq   float64 `json:"context_switches_per_request"`
	CPUSeconds              float64 `json:"cpu_seconds"`
	CPUMicrosPerRequest     float64 `json:"cpu_us_per_request"`
	ClientCPUMicrosPerReq   float64 `json:"client_cpu_us_per_request"`
	ServerCPUMicrosPerReq   float64 `json:"server_cpu_us_per_request"`
	DatapathCPUMicrosPerReq float64 `json:"datapath_cpu_us_per_request"`
}

// Process roles.
const (
	RoleClient   = "client"   // the load client
	RoleServer   = "server"   // an echo server
	RoleDatapath = "datapath" // a proxy or forwarder of the datapath
	// RoleChaos is a fault's own process (a delay queue in a pod reached
	// through an agent): not the datapath's, and left out of its cost.
	RoleChaos = "chaos"
)

// Process is one process in the testbed, measured over a step, with every
// process it started: its figures are summed over itself and Descendants.
type Process struct {
	Pod  string `json:"pod"`
	Node string `json:"node"`
	Name string `json:"name"`
	Role string `json:"role"`
	PID  int    `json:"pid"`
	// RSSBytes, PSSBytes and USSBytes are read at the end of the step.
	// USSBytes is the private memory (no other process maps those pages);
	// RSS − USS is shared, here mostly with the other processes that run
	// the same binary. 0 in results from before it was recorded.
	RSSBytes        int64   `json:"rss_bytes"`
	PSSBytes        int64   `json:"pss_bytes"`
	USSBytes        int64   `json:"uss_bytes,omitempty"`
	CPUSeconds      float64 `json:"cpu_seconds"`
	ContextSwitches int64   `json:"context_switches"`
	// Descendants are the processes below this one at the end of the step,
	// whose figures are included above: a sidecar or node proxy running
	// the Envoy engine is the meshbench wrapper and its Envoy child, and
	// the proxy's cost is both.
	Descendants []Descendant `json:"descendants,omitempty"`
}

// Footprint is what a report needs, besides the datapath processes'
// memory, to extrapolate a datapath's memory to a larger cluster: kernel
// memory no process shows, and the memory each pod adds to a per-node
// process.
type Footprint struct {
	// BPFBytes is the kernel memory of the datapath's BPF programs and
	// maps on the testbed (their memlock, as the kernel accounts it: a
	// preallocated map counts in full, empty or not). BPFCopies is how many
	// independent copies of them it loaded (one per node, or one for the
	// whole testbed); a cluster loads one per node.
	BPFBytes  int64 `json:"bpf_bytes,omitempty"`
	BPFCopies int   `json:"bpf_copies,omitempty"`
	// PodBytes is the memory each pod on a node adds to that node's
	// datapath process, already inside the process's RSS and PSS (afxdp:
	// the AF_XDP socket on the pod's veth, its UMEM and rings). PodUnits is
	// how many such pods the testbed's processes held.
	PodBytes int64 `json:"pod_bytes,omitempty"`
	PodUnits int   `json:"pod_units,omitempty"`
	// Basis says in words what the figures count.
	Basis string `json:"basis,omitempty"`
}

// Descendant names a process counted in an ancestor's Process.
type Descendant struct {
	PID  int    `json:"pid"`
	Comm string `json:"comm"`
	// Its own share of the process's figures (a proxy engine's child, say
	// haproxy under its meshbench wrapper): memory at the end of the step,
	// CPU over it. 0 in results from before they were recorded.
	RSSBytes   int64   `json:"rss_bytes,omitempty"`
	PSSBytes   int64   `json:"pss_bytes,omitempty"`
	USSBytes   int64   `json:"uss_bytes,omitempty"`
	CPUSeconds float64 `json:"cpu_seconds,omitempty"`
}

// Summary aggregates the repetitions of one datapath × rate.
type Summary struct {
	Datapath    string  `json:"datapath"`
	Service     string  `json:"service"`
	OfferedRPS  float64 `json:"offered_rps"`
	Repetitions int     `json:"repetitions"`
	// Each Spread is the median over repetitions with min and max.
	AchievedRPS       Spread `json:"achieved_rps"`
	SuccessRatio      Spread `json:"success_ratio"`
	P50US             Spread `json:"p50_us"`
	P90US             Spread `json:"p90_us"`
	P99US             Spread `json:"p99_us"`
	P999US            Spread `json:"p999_us"`
	MaxUS             Spread `json:"max_us"`
	SegmentsPerReq    Spread `json:"segments_per_request"`
	CtxSwitchesPerReq Spread `json:"context_switches_per_request"`
	CPUMicrosPerReq   Spread `json:"cpu_us_per_request"`
	// KernelP50US and KernelP99US are the kernel-side latency's, and
	// OverheadP50US and OverheadP99US the client overhead's, over the
	// repetitions the kernel stamped (empty when it stamped none).
	KernelP50US   Spread `json:"kernel_p50_us"`
	KernelP99US   Spread `json:"kernel_p99_us"`
	OverheadP50US Spread `json:"client_overhead_p50_us"`
	OverheadP99US Spread `json:"client_overhead_p99_us"`
	// ProofVerified is true when every repetition's proof was verified.
	ProofVerified bool `json:"proof_verified"`
}

// Spread is a median with the extremes over repetitions.
type Spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	// Values are the individual repetitions, in order.
	Values []float64 `json:"values"`
}

// Duration is a time.Duration that encodes as a Go duration string.
type Duration time.Duration

// MarshalJSON encodes d as a string such as "1.5s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON decodes a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}
