package datapaths

import (
	"fmt"
	"slices"
	"strings"

	"github.com/meshbench/meshbench/harness/results"
)

// Work is what the load client did in one window of a step (the warm-up or
// the measured window): the work a datapath's counters must account for.
type Work struct {
	// Successes are requests answered 2xx.
	Successes int64
	// HTTPErrors are requests answered with a 4xx or 5xx status: some hop
	// of the path answered them.
	HTTPErrors int64
	// Timeouts are requests the client gave up on. The path may still have
	// carried and answered them after the client stopped waiting.
	Timeouts int64
	// TransportErrors are requests that failed below HTTP (refused, reset,
	// unreachable): they may or may not have reached a hop that counts.
	TransportErrors int64
	// BytesSent and BytesReceived are what the client wrote to and read
	// from its sockets.
	BytesSent, BytesReceived int64
	// ConnsOpened counts the connections the client dialled.
	ConnsOpened int64
	// ClientOutSegs and ClientInSegs are the TCP segments the client pod's
	// network namespace sent and received (its /proc/net/snmp).
	ClientOutSegs, ClientInSegs int64
	// Slack is how many requests may land on either side of a window edge:
	// the client's own count and the datapath's counters cannot be read at
	// the same instant. SlackWhy says what the figure is made of.
	Slack    int64
	SlackWhy string
	// Protocol is the loaded service's mesh protocol, "http" or "tcp".
	Protocol string
}

// Failures returns every request that completed without a 2xx answer.
func (w Work) Failures() int64 { return w.HTTPErrors + w.Timeouts + w.TransportErrors }

// Requests returns the requests that completed, successful or not.
func (w Work) Requests() int64 { return w.Successes + w.Failures() }

// SlackBytes returns the bytes of Slack requests, at the window's average
// bytes per request in the direction given (sent or received).
func (w Work) SlackBytes(bytes int64) int64 {
	return w.Slack * ceilDiv(bytes, max(1, w.Requests()))
}

// SlackSegs returns the TCP segments of Slack requests, at the window's
// average segments per request in the direction given, plus two for
// delayed ACKs at each edge.
func (w Work) SlackSegs(segs int64) int64 {
	return w.Slack*ceilDiv(segs, max(1, w.Requests())) + 4
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// EdgeWhy is the reason every window-edge tolerance gives.
const EdgeWhy = "the client's count and the counters are read at slightly different instants"

// Near checks that got equals want within ± slack.
func Near(name string, got, want, slack int64, figure, why string) results.ProofCheck {
	return results.ProofCheck{
		Name: name, Got: float64(got), Want: fmt.Sprintf("%d ± %d", want, slack),
		Figure: figure, OK: got >= want-slack && got <= want+slack, Why: why,
	}
}

// Within checks that lo ≤ got ≤ hi.
func Within(name string, got, lo, hi int64, figure, why string) results.ProofCheck {
	lo = max(lo, 0)
	want := fmt.Sprintf("%d..%d", lo, hi)
	if lo == hi {
		want = fmt.Sprint(lo)
	}
	return results.ProofCheck{
		Name: name, Got: float64(got), Want: want,
		Figure: figure, OK: got >= lo && got <= hi, Why: why,
	}
}

// AtLeastPer checks that got is at least min per unit of per (got/per ≥
// min); figure is "<got/per> <unit>".
func AtLeastPer(name string, got, per int64, min float64, unit, why string) results.ProofCheck {
	r := ratio(got, per)
	return results.ProofCheck{
		Name: name, Got: r, Want: fmt.Sprintf(">= %g", min),
		Figure: fmt.Sprintf("%.2f %s", r, unit), OK: per > 0 && r >= min, Why: why,
	}
}

// Fail is a check that failed outright, for a proof that has nothing to
// hold its counters to (no successful request in the window, say).
func Fail(name, detail string) results.ProofCheck {
	return results.ProofCheck{Name: name, Want: "—", Figure: "—", Detail: detail}
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// PerSuccess formats n per success of w ("1.00 <unit>").
func PerSuccess(n int64, w Work, unit string) string {
	return fmt.Sprintf("%.2f %s", ratio(n, w.Successes), unit)
}

// Answered checks, from a proxy's own outcome counters, that it answered
// the client's successes with 2xx and its HTTP errors with 4xx/5xx. The
// path may have answered requests the client had already given up on, so
// the client's timeouts widen each rule upward. who names the proxy
// ("client sidecar").
func Answered(who string, ok2xx, errs int64, w Work) []results.ProofCheck {
	return []results.ProofCheck{
		Within(who+" answered the successes with 2xx", ok2xx, w.Successes-w.Slack, w.Successes+w.Timeouts+w.Slack,
			who+" "+PerSuccess(ok2xx, w, "2xx/req"),
			"± the window-edge slack ("+w.SlackWhy+"), plus the client's timeouts, which the proxy may still have answered"),
		Within(who+" answered the HTTP errors with 4xx/5xx", errs, w.HTTPErrors-w.Slack, w.HTTPErrors+w.Timeouts+w.Slack,
			fmt.Sprintf("%s %d 4xx/5xx", who, errs),
			"every 4xx/5xx the client got was answered by this proxy; ± the window-edge slack, plus the client's timeouts"),
	}
}

// Detail joins checks into one sentence per check, for Proof.Detail.
func Detail(checks []results.ProofCheck) string {
	parts := make([]string, 0, len(checks))
	for _, c := range checks {
		mark := "ok"
		if !c.OK {
			mark = "FAILED"
		}
		s := fmt.Sprintf("%s: %s (want %s) %s", c.Name, c.Figure, c.Want, mark)
		if c.Detail != "" {
			s += ": " + c.Detail
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// Prove holds the counter deltas of one window to w with verify (a
// Datapath's Verify) and returns the proof, verified when every check
// passed. A window without a successful request proves nothing: its proof
// fails. The proof keeps the deltas that are not zero.
func Prove(source string, verify func(map[string]int64, Work) []results.ProofCheck, delta map[string]int64, w Work) results.Proof {
	var checks []results.ProofCheck
	if w.Successes <= 0 {
		checks = append(checks, Fail("the client had successful requests", fmt.Sprintf("%d successes, %d failures", w.Successes, w.Failures())))
	}
	checks = append(checks, verify(delta, w)...)
	changed := make(map[string]int64)
	for k, v := range delta {
		if v != 0 {
			changed[k] = v
		}
	}
	p := results.Proof{Source: source, Counters: changed, Checks: checks, Detail: Detail(checks)}
	p.Verify()
	return p
}

// Hop counters: a proxy datapath's Counters put, for each receiving proxy
// (a backend pod's sidecar, a destination node's proxy), what it received
// and what the sending proxy counted for it, under these key prefixes
// followed by the receiver's name. Deltas of them are what Delivered holds
// to account.
const (
	HopReceived2xx   = "hop_received_2xx/"   // 2xx the receiving proxy answered on its inbound listener
	HopSent2xx       = "hop_sent_2xx/"       // 2xx the sending proxy got back from that receiver
	HopSentErr       = "hop_sent_error/"     // attempts to that receiver the sending proxy counted as failed
	HopReceivedBytes = "hop_received_bytes/" // bytes the receiving proxy read on its inbound listener
	HopSentBytes     = "hop_sent_bytes/"     // bytes the sending proxy wrote toward that receiver
)

// Delivered checks that every receiving proxy answered 2xx exactly what the
// sending proxy counted as answered 2xx for it (a receiver skipped, its
// redirect removed, shows up as a shortfall there). A receiver may have
// answered more: attempts the sender counted as failed (a timeout, a reset,
// a lost answer) may still have been answered. what names the hop
// ("backend sidecars").
//
// When the sending proxy keeps no per-endpoint counters (Envoy's are not
// read), the receivers are held together to the client's successes, up to
// the sender's retries and the client's timeouts more.
func Delivered(what string, delta map[string]int64, retries int64, w Work) results.ProofCheck {
	var total int64
	var bad []string
	names := hopNames(delta, HopReceived2xx)
	if len(hopNames(delta, HopSent2xx)) == 0 {
		for _, n := range names {
			total += delta[HopReceived2xx+n]
		}
		return Within(what+" answered the successes", total, w.Successes-w.Slack, w.Successes+retries+w.Timeouts+w.Slack,
			what+" "+PerSuccess(total, w, "2xx/req"),
			"the sending engine keeps no per-endpoint counters, so the receivers are held together: ± the window-edge slack ("+w.SlackWhy+"), plus retries and timeouts, whose attempts may have been answered too")
	}
	for _, n := range names {
		got, sent, failed := delta[HopReceived2xx+n], delta[HopSent2xx+n], delta[HopSentErr+n]
		total += got
		if got < sent-w.Slack || got > sent+failed+w.Slack {
			bad = append(bad, fmt.Sprintf("%s answered %d, sender counted %d (+%d failed)", n, got, sent, failed))
		}
	}
	c := results.ProofCheck{
		Name: what + " answered what was sent to each of them", Got: float64(total),
		Want:   "per receiver: sent 2xx ± slack, up to + failed attempts",
		Figure: what + " " + PerSuccess(total, w, "2xx/req"), OK: len(names) > 0 && len(bad) == 0,
		Why: "each receiver is checked on its own against the sender's per-endpoint count; ± the window-edge slack (" + w.SlackWhy +
			"); attempts the sender counted as failed may still have been answered",
		Detail: strings.Join(bad, "; "),
	}
	if len(names) == 0 {
		c.Detail = "no receiving proxy counted"
	}
	return c
}

// DeliveredBytes is Delivered for TCP passthrough: every receiving proxy
// read the bytes the sending proxy wrote toward it. When the sender keeps
// no per-endpoint counts (no HopSentBytes keys: Envoy), the receivers
// together must have read what the client wrote.
func DeliveredBytes(what string, delta map[string]int64, w Work) results.ProofCheck {
	var total int64
	var bad []string
	names := hopNames(delta, HopReceivedBytes)
	slack := w.SlackBytes(w.BytesSent)
	if len(hopNames(delta, HopSentBytes)) == 0 {
		for _, n := range names {
			total += delta[HopReceivedBytes+n]
		}
		return Near(what+" read the bytes the client sent", total, w.BytesSent, slack,
			fmt.Sprintf("%s %.2f of client's bytes", what, ratio(total, w.BytesSent)),
			"the sending engine keeps no per-endpoint byte counts, so the receivers are held together to what the client wrote: ± the window-edge slack in bytes ("+w.SlackWhy+")")
	}
	for _, n := range names {
		got, sent := delta[HopReceivedBytes+n], delta[HopSentBytes+n]
		total += got
		if got < sent-slack || got > sent+slack {
			bad = append(bad, fmt.Sprintf("%s read %d bytes, sender wrote %d", n, got, sent))
		}
	}
	c := results.ProofCheck{
		Name: what + " read the bytes sent to each of them", Got: float64(total),
		Want:   fmt.Sprintf("per receiver: bytes sent ± %d", slack),
		Figure: fmt.Sprintf("%s %.0f bytes/req", what, ratio(total, w.Successes)), OK: len(names) > 0 && len(bad) == 0,
		Why:    "each receiver against the sender's per-endpoint byte count; ± the window-edge slack in bytes (" + w.SlackWhy + ")",
		Detail: strings.Join(bad, "; "),
	}
	if len(names) == 0 {
		c.Detail = "no receiving proxy counted"
	}
	return c
}

// hopNames returns the receivers named by keys with prefix, sorted.
func hopNames(delta map[string]int64, prefix string) []string {
	var names []string
	for k := range delta {
		if n, ok := strings.CutPrefix(k, prefix); ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// ClientBytes checks, in TCP passthrough, that the proxy next to the
// client read every byte the client wrote and wrote every byte it read.
func ClientBytes(who string, in, out int64, w Work) []results.ProofCheck {
	return []results.ProofCheck{
		Near(who+" read the bytes the client sent", in, w.BytesSent, w.SlackBytes(w.BytesSent),
			fmt.Sprintf("%s in %.2f of client's bytes", who, ratio(in, w.BytesSent)), "± the window-edge slack in bytes ("+w.SlackWhy+")"),
		Near(who+" wrote the bytes the client received", out, w.BytesReceived, w.SlackBytes(w.BytesReceived),
			fmt.Sprintf("%s out %.2f of client's bytes", who, ratio(out, w.BytesReceived)), "± the window-edge slack in bytes ("+w.SlackWhy+")"),
	}
}

// EchoChecks are the checks of a path with no hop of its own: the echo
// servers named who ("backends' echo servers") served the successes
// (served requests), and every one of them came from the peer named from
// (direct of them did).
func EchoChecks(who string, served, direct int64, from string, w Work) []results.ProofCheck {
	return []results.ProofCheck{
		Within(who+" served the successes", served, w.Successes-w.Slack, w.Successes+w.Failures()+w.Slack,
			PerSuccess(served, w, "served/req"),
			"± the window-edge slack ("+w.SlackWhy+"); plus failed requests, which a server may have answered before the answer was lost"),
		Within("every request came straight from "+from, direct, served, served,
			fmt.Sprintf("%.0f%% direct", 100*ratio(direct, served)),
			"exact: a proxy or NAT between the client and the servers would show up as another peer"),
	}
}
