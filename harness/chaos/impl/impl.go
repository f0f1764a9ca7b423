package impl

// Implementations of the faults.
const (
	Signal       = "signal"             // pod-kill, proxy-kill: SIGKILL, restart by callback
	PodDelete    = "pod-delete"         // pod-kill on Kubernetes: the pod deleted (grace period 0), its Deployment's replacement followed
	Netem        = "netem"              // delay: sch_netem on the pod's eth0
	NFQueue      = "nfqueue"            // delay: iptables NFQUEUE + user-space hold
	Statistic    = "iptables-statistic" // loss: iptables statistic DROP on the receiver's INPUT
	TCBPF        = "tc-bpf"             // loss, partition: tcx BPF program on the receiver's ingress (the sender's egress for "to" loss without a target)
	IptablesDrop = "iptables-drop"      // partition: iptables DROP on both sides' INPUT
	TBF          = "tbf"                // bandwidth: token bucket filter qdisc
	HTB          = "htb"                // bandwidth: hierarchical token bucket (probed, not implemented)
)
