package sidecar

import (
	"github.com/meshbench/meshbench/internal/iptables"
	"github.com/meshbench/meshbench/internal/nsutil"
	"github.com/meshbench/meshbench/internal/ports"
	"github.com/meshbench/meshbench/internal/uids"

	"bytes"
	"context"
	"strings"
	"text/template"
)

// ProxyUID and ProxyGID are the credentials the proxy runs with; the rules
// let its own traffic through, as Istio's do.
const (
	ProxyUID = uids.Proxy
	ProxyGID = uids.Proxy
)

// RuleOptions parameterise the rule set.
type RuleOptions struct {
	OutboundPort int // 15001
	InboundPort  int // 15006
	// ExcludeInboundPorts are not redirected inbound (the proxies' and the
	// harness's own ports).
	ExcludeInboundPorts []int
	// InboundOnly leaves outbound traffic alone (no OUTPUT rules): for
	// datapaths that steer the app's connects to the sidecar in eBPF.
	InboundOnly bool
}

// DefaultRuleOptions are Istio's defaults, plus the echo server's admin port.
func DefaultRuleOptions() RuleOptions {
	return RuleOptions{
		OutboundPort:        ports.ProxyOutbound,
		InboundPort:         ports.ProxyInbound,
		ExcludeInboundPorts: ports.InboundExcluded(),
	}
}

// chains are the chains the rules create, in creation order.
var chains = []string{"ISTIO_INBOUND", "ISTIO_REDIRECT", "ISTIO_IN_REDIRECT", "ISTIO_OUTPUT"}

// The nat rules istio-iptables installs in a pod (Istio 1.2x, TCP, IPv4,
// capture everything, uid and gid 1337 excluded), in iptables-restore form.
var rulesTmpl = template.Must(template.New("rules").Parse(`*nat
:ISTIO_INBOUND - [0:0]
:ISTIO_REDIRECT - [0:0]
:ISTIO_IN_REDIRECT - [0:0]
:ISTIO_OUTPUT - [0:0]
-A PREROUTING -p tcp -j ISTIO_INBOUND
{{- if not .InboundOnly}}
-A OUTPUT -p tcp -j ISTIO_OUTPUT
{{- end}}
{{- range .ExcludeInboundPorts}}
-A ISTIO_INBOUND -p tcp --dport {{.}} -j RETURN
{{- end}}
-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports {{.InboundPort}}
{{- if not .InboundOnly}}
-A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --uid-owner {{.UID}} -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner {{.UID}} -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner {{.UID}} -j RETURN
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --gid-owner {{.GID}} -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner {{.GID}} -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner {{.GID}} -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
-A ISTIO_OUTPUT -j ISTIO_REDIRECT
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports {{.OutboundPort}}
{{- end}}
COMMIT
`))

// Rules renders the rule set in iptables-restore form.
func Rules(o RuleOptions) string {
	var b bytes.Buffer
	err := rulesTmpl.Execute(&b, struct {
		RuleOptions
		UID, GID int
	}{o, ProxyUID, ProxyGID})
	if err != nil {
		panic(err) // the template is fixed; a failure is a programming error
	}
	return b.String()
}

// removeRules is the iptables-restore input that undoes Rules: the jumps
// from the built-in chains, then the chains themselves.
func removeRules(o RuleOptions) string {
	var b strings.Builder
	b.WriteString("*nat\n")
	b.WriteString("-D PREROUTING -p tcp -j ISTIO_INBOUND\n")
	if !o.InboundOnly {
		b.WriteString("-D OUTPUT -p tcp -j ISTIO_OUTPUT\n")
	}
	for _, c := range chains {
		b.WriteString("-F " + c + "\n")
	}
	for _, c := range chains {
		b.WriteString("-X " + c + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// applyRules installs the rule set in ns, atomically.
func applyRules(ctx context.Context, ns nsutil.Netns, o RuleOptions) error {
	return iptables.Restore(ctx, ns, Rules(o))
}

// deleteRules removes the rule set from ns.
func deleteRules(ctx context.Context, ns nsutil.Netns, o RuleOptions) error {
	return iptables.Restore(ctx, ns, removeRules(o))
}

// SaveNat returns `iptables-save -t nat` of ns, without comments and
// counters, for comparisons.
func SaveNat(ctx context.Context, ns nsutil.Netns) (string, error) {
	out, err := iptables.Save(ctx, ns, "nat")
	if err != nil {
		return "", err
	}
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "#") || l == "" {
			continue
		}
		if strings.HasPrefix(l, ":") {
			// ":CHAIN POLICY [packets:bytes]": drop the counters.
			if i := strings.LastIndex(l, " ["); i > 0 {
				l = l[:i]
			}
		}
		lines = append(lines, l)
	}
	return strings.Join(lines, "\n") + "\n", nil
}
