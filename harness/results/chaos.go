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
	// traffic recovered (or the step ended).
	Errors int64 `json:"errors"`
	// DetectS is the time from StartS to the start of the first window
	// with errors, -1 when no window had any.
	DetectS float64 `json:"detect_s"`
	// RecoverS is the time from EndS to the start of the first window at
	// or after EndS with success ratio >= 0.99 and p99 at most twice the
	// pre-fault p99; -1 when the traffic never recovered in the step.
	RecoverS float64 `json:"recover_s"`
	// Error says why injecting or recovering the fault failed.
	Error string `json:"error,omitempty"`
}
