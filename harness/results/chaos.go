package results

// FaultRecord is one fault of a step's chaos timeline: what was injected,
// where, when, how, and what it did to the traffic.
type FaultRecord struct {
	// Name is the scenario entry's name; Fault its fault (pod-kill,
	// proxy-kill, delay, loss, partition, bandwidth).
	Name  string `json:"name"`
	Fault string `json:"fault"`
	// Selector and Target describe the entry's selectors as written
	// ("pods=n1-p0 services=echo mode=one direction=to").
	Selector string `json:"selector"`
	Target   string `json:"target,omitempty"`
	// Pods are the pods (or processes, for proxy-kill) the fault acted on.
	Pods []string `json:"pods,omitempty"`
	// Implementation is how the fault was applied (signal, nfqueue, netem,
	// iptables-statistic, tc-bpf, iptables-drop, tbf).
	Implementation string `json:"implementation"`
	// Parameters are the fault's parameters as text ("latency=20ms").
	Parameters string `json:"parameters,omitempty"`
	// StartS and EndS are when the fault was injected and recovered, in
	// seconds from the start of the measured window; EndS is -1 when the
	// fault was never recovered.
	StartS float64 `json:"start_s"`
	EndS   float64 `json:"end_s"`
	// Errors counts failed requests in the windows from StartS until the
	// traffic recovered (or the step ended) that no other fault claims;
	// SharedErrors those of windows that overlapping faults (SharedWith)
	// claim too. Each failed request is counted once in Errors or in the
	// SharedErrors of every fault that claims it, never in two Errors.
	Errors       int64    `json:"errors"`
	SharedErrors int64    `json:"shared_errors,omitempty"`
	SharedWith   []string `json:"shared_with,omitempty"`
	// DetectS is the time from StartS to the start of the first window
	// that shows the fault: a failed request, or a latency above twice
	// the pre-fault baseline (p90 above twice the median p90, or p99 above
	// twice the worst p99, of the windows before the first fault; see
	// chaos.Analyze); -1 when none does.
	DetectS float64 `json:"detect_s"`
	// RecoverS is the time from EndS to the start of the first window at
	// or after EndS from which the traffic stays healthy (success ratio >=
	// 0.99, latency within those bounds) for 0.5 s or to the step's end;
	// -1 when the traffic never recovered in the step.
	RecoverS float64 `json:"recover_s"`
	// ResolutionS is the width of the windows DetectS and RecoverS are
	// measured in: they are exact to this.
	ResolutionS float64 `json:"resolution_s,omitempty"`
	// Activity is the fault's own evidence that it acted, read from its
	// rules, programs, qdiscs or killed processes just before it was
	// removed.
	Activity *FaultActivity `json:"activity,omitempty"`
	// AllowInactive is the scenario entry's allow_inactive: an inactive
	// fault does not fail the step.
	AllowInactive bool `json:"allow_inactive,omitempty"`
	// Readiness is, for pod-kill, what the readiness probe did.
	Readiness *ReadinessRecord `json:"readiness,omitempty"`
	// Error says why injecting or recovering the fault failed.
	Error string `json:"error,omitempty"`
}

// Inactive reports whether the fault was injected and its own counters
// show it did nothing.
func (f FaultRecord) Inactive() bool {
	return f.StartS >= 0 && f.Activity != nil && !f.Activity.Active
}

// FaultActivity is a fault's own evidence that it acted.
type FaultActivity struct {
	// Active is true when the counters show the fault acted on traffic or
	// processes: its rules or programs matched packets, its qdisc shaped
	// or delayed them, it killed processes that stayed dead.
	Active bool `json:"active"`
	// Counters are the fault's counters by name: rule_packets (packets
	// its iptables rules matched: for loss and partition, the drops),
	// queued (packets NFQUEUE held for delay), dropped (tc BPF drops),
	// qdisc_packets, qdisc_drops and qdisc_overlimits (the root qdisc's
	// statistics), killed (processes killed).
	Counters map[string]int64 `json:"counters,omitempty"`
	// KilledPIDs are the processes a kill fault killed.
	KilledPIDs []int `json:"killed_pids,omitempty"`
	// StayedDown is, for kill faults, whether every killed process stayed
	// dead, and nothing replaced it, until the fault was recovered.
	StayedDown *bool `json:"stayed_down,omitempty"`
	// Detail says what the counters show, in words.
	Detail string `json:"detail"`
}

// ReadinessRecord is what the readiness probe did during a pod-kill: when
// it took the killed pods out of their services' endpoints and when it put
// them back.
type ReadinessRecord struct {
	// PeriodS, FailureThreshold and SuccessThreshold are the probe's.
	PeriodS          float64 `json:"period_s"`
	FailureThreshold int     `json:"failure_threshold"`
	SuccessThreshold int     `json:"success_threshold"`
	// NotReadyS is the time from StartS (the kill) until the probe marked
	// the last killed pod not ready; -1 when it never did (the pod was
	// restarted first).
	NotReadyS float64 `json:"not_ready_s"`
	// ReadyS is the time from EndS (the restart) until the probe marked
	// the last killed pod ready again; -1 when it did not in the step.
	ReadyS float64 `json:"ready_s"`
	// Source says who probed: the harness, or the cluster's kubelet
	// (whose endpoint changes the harness followed).
	Source string `json:"source,omitempty"`
}
