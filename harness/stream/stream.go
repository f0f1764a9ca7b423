package stream

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/meshbench/meshbench/harness/results"
)

// Line types: the value of the "type" field of each line of the stream.
const (
	TypeWindow  = "window"  // a Window line, written as each window closes
	TypeMark    = "mark"    // the Mark line, written when the measured window begins
	TypeSummary = "summary" // the Summary line, written once at the end
)

// Error classes: the keys of Summary.Errors. The set is small and stable so
// that runs and datapaths can be compared.
const (
	ErrorTimeout           = "timeout"            // the request timed out (dial, headers or body)
	ErrorConnectionRefused = "connection_refused" // ECONNREFUSED: nothing listening, or a REJECT
	ErrorConnectionReset   = "connection_reset"   // ECONNRESET, EPIPE or EOF: the connection was cut under the request
	ErrorUnreachable       = "unreachable"        // EHOSTUNREACH, ENETUNREACH, EHOSTDOWN
	ErrorHTTP5xx           = "http_5xx"           // the server answered 5xx
	ErrorHTTP4xx           = "http_4xx"           // the server answered 4xx
	ErrorOther             = "other"              // anything else (including 1xx and 3xx answers)
)

// ErrNoSummary is returned by ReadStream when the stream ends before its
// summary line.
var ErrNoSummary = errors.New("load stream ended without a summary")

// maxLine bounds one line of the stream (a summary with a full histogram is
// tens of kilobytes).
const maxLine = 16 << 20

// Window is one window line: a fixed time bucket of the measured window,
// written when every request sent in it has completed (or at the end).
type Window struct {
	Type string `json:"type"` // TypeWindow
	results.Window
}

// Mark is the mark line, written the moment the measured window begins
// (at the end of the warm-up), so that the harness can read the
// datapath's counters as close to that moment as it can.
type Mark struct {
	Type string    `json:"type"` // TypeMark
	Time time.Time `json:"time"`
}

// Work counts what the client did in one window, for the proof of path:
// how its requests ended, and what went over its sockets.
type Work struct {
	Successes int64 `json:"successes"`
	// Errors counts failed requests by class (the Error* constants).
	Errors map[string]int64 `json:"errors,omitempty"`
	// BytesSent and BytesReceived are the bytes the client wrote to and
	// read from its sockets, HTTP framing included.
	BytesSent     int64 `json:"bytes_sent"`
	BytesReceived int64 `json:"bytes_received"`
	// ConnectionsOpened counts the connections the client dialled.
	ConnectionsOpened int64 `json:"connections_opened"`
}

// Summary is the summary line: what the load client measured over the
// measured window (warm-up excluded). Latencies are measured from each
// request's intended send time.
type Summary struct {
	Type       string   `json:"type"` // TypeSummary
	Targets    []string `json:"targets"`
	OfferedRPS float64  `json:"offered_rps"`
	// Warmup and Duration are the configured warm-up and measured window.
	Warmup   results.Duration `json:"warmup"`
	Duration results.Duration `json:"duration"`
	// Measured is the actual span of the measured window: Duration, or less
	// when the client was interrupted.
	Measured results.Duration `json:"measured"`
	// WarmupRequests counts the completed requests discarded as warm-up.
	WarmupRequests int64 `json:"warmup_requests"`
	// Sent counts the requests sent in the measured window.
	Sent int64 `json:"sent"`
	// Requests counts the sent requests that completed (success or error);
	// it differs from Sent only by Aborted.
	Requests  int64 `json:"requests"`
	Successes int64 `json:"successes"`
	// Aborted counts requests still in flight when the client was
	// interrupted: neither successes nor errors.
	Aborted int64 `json:"aborted,omitempty"`
	// Errors counts failed requests by class (the Error* constants).
	Errors map[string]int64 `json:"errors,omitempty"`
	// ErrorSamples holds the first error message seen of each class.
	ErrorSamples map[string]string `json:"error_samples,omitempty"`
	SuccessRatio float64           `json:"success_ratio"`
	// SentRPS is Sent / Measured; AchievedRPS is Successes / Measured.
	SentRPS     float64 `json:"sent_rps"`
	AchievedRPS float64 `json:"achieved_rps"`
	// Connections is how many persistent connections the client keeps in
	// all; ConnectionsOpened counts those it dialled, warm-up included: as
	// many unless some broke (a fault, a server closing them).
	Connections       int   `json:"connections"`
	ConnectionsOpened int64 `json:"connections_opened"`
	// Mark is when the measured window began by the client's clock (the
	// mark line's time); zero when it never began.
	Mark time.Time `json:"mark,omitzero"`
	// WarmupWork is what completed before Mark: requests intended in the
	// warm-up, and the bytes and connections up to Mark.
	WarmupWork Work `json:"warmup_work"`
	// Work is the measured window's: its requests' outcomes (Successes and
	// Errors again), and the bytes and connections from Mark to the end.
	Work Work `json:"work"`
	// Stragglers counts warm-up requests that completed after Mark: they
	// land in the measured window of any counter read at Mark.
	Stragglers int64 `json:"stragglers"`
	// LatencyUS is measured from each request's intended send time to the
	// end of its response, over the successful requests;
	// FailureLatencyUS the same over the failed ones.
	LatencyUS        results.Latency   `json:"latency_us"`
	Histogram        results.Histogram `json:"histogram"`
	FailureLatencyUS results.Latency   `json:"failure_latency_us"`
	FailureHistogram results.Histogram `json:"failure_histogram"`
	// KernelLatencyUS is the kernel-side latency of the successes the
	// kernel timestamped (KernelStamped of them): from the request's last
	// byte leaving the client's socket to the response's last segment
	// arriving at it. ClientOverheadUS is, per such request, its latency
	// less its kernel-side latency: the client's own share.
	KernelStamps     bool              `json:"kernel_stamps"`
	KernelStamped    int64             `json:"kernel_stamped"`
	KernelLatencyUS  results.Latency   `json:"kernel_latency_us"`
	KernelHistogram  results.Histogram `json:"kernel_histogram"`
	ClientOverheadUS results.Latency   `json:"client_overhead_us"`
	// OverheadPartsUS splits the client overhead of the stamped requests
	// into its parts, in order: send_lag (intended time → the request
	// starts: pacer and goroutine hand-off), to_socket (→ written: vegeta,
	// net/http's client, a free connection), to_wire (→ the kernel stamps
	// it leaving: the socket's TCP/IP send path), from_wire (the kernel
	// stamps the response arriving → read: TCP/IP receive path, wake-up,
	// read) and after_read (→ the result is handed over).
	OverheadPartsUS map[string]results.Latency `json:"client_overhead_parts_us,omitempty"`
	// PacerSpin is how long before each send the pacer spun (0: never).
	PacerSpin results.Duration `json:"pacer_spin"`
	// SendLagUS is how late the client sent each request after its
	// intended time: the client's own share of LatencyUS (the pacer and
	// the goroutine that sends).
	SendLagUS results.Latency `json:"send_lag_us"`
	// Windows are the window lines that preceded the summary; ReadStream
	// fills them in (the client does not repeat them in the summary line).
	Windows     []results.Window `json:"windows,omitempty"`
	Interrupted bool             `json:"interrupted,omitempty"`
	// ClientCPUSeconds and ClientContextSwitches are the load client's own
	// CPU time and context switches (getrusage) over the measured window;
	// ClientRSSBytes is its peak resident set.
	ClientCPUSeconds      float64 `json:"client_cpu_seconds"`
	ClientContextSwitches int64   `json:"client_context_switches"`
	ClientRSSBytes        int64   `json:"client_rss_bytes"`
}

// Step returns a step record with the measured fields filled in from s:
// rates, durations (Duration is the measured span), counts, errors,
// latency, histogram, windows and Interrupted. The caller fills in the
// datapath, service, repetition, proof and cost.
func (s *Summary) Step() results.Step {
	st := results.Step{
		OfferedRPS:   s.OfferedRPS,
		AchievedRPS:  s.AchievedRPS,
		SentRPS:      s.SentRPS,
		Warmup:       s.Warmup,
		Duration:     s.Measured,
		Requests:     s.Requests,
		Successes:    s.Successes,
		SuccessRatio: s.SuccessRatio,
		LatencyUS:    s.LatencyUS,
		Histogram: results.Histogram{
			SignificantFigures: s.Histogram.SignificantFigures,
			Buckets:            slices.Clone(s.Histogram.Buckets),
		},
		Windows:       slices.Clone(s.Windows),
		Interrupted:   s.Interrupted,
		KernelStamped: s.KernelStamped,
		Client: results.ClientRun{
			OverheadPartsUS: maps.Clone(s.OverheadPartsUS),
			SendLagUS:       s.SendLagUS,
			Connections:     s.Connections, ConnectionsOpened: s.ConnectionsOpened,
			ConnectionsOpenedMeasured: s.Work.ConnectionsOpened,
			KernelStamps:              s.KernelStamps, PacerSpin: s.PacerSpin,
		},
	}
	if len(s.Errors) > 0 {
		st.Errors = maps.Clone(s.Errors)
	}
	if Count(s.FailureHistogram) > 0 {
		l, h := s.FailureLatencyUS, cloneHistogram(s.FailureHistogram)
		st.FailureLatencyUS, st.FailureHistogram = &l, &h
	}
	if s.KernelStamped > 0 {
		k, o, h := s.KernelLatencyUS, s.ClientOverheadUS, cloneHistogram(s.KernelHistogram)
		st.KernelLatencyUS, st.ClientOverheadUS, st.KernelHistogram = &k, &o, &h
	}
	return st
}

// WriteLine writes v (a Window or a Summary) as one JSON line.
func WriteLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode load line: %w", err)
	}
	b = append(b, '\n')
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write load line: %w", err)
	}
	return nil
}

// ReadStream reads the load client's stream from r, calls onWindow (when
// not nil) for each window line, and returns at the summary line, with the
// windows read so far in Summary.Windows. Lines that are not JSON objects
// are skipped, as are objects of unknown type; a malformed object is an
// error. A stream that ends before its summary returns ErrNoSummary.
func ReadStream(r io.Reader, onWindow func(results.Window)) (*Summary, error) {
	return ReadStreamWith(r, Handlers{Window: onWindow})
}

// Handlers are called by ReadStreamWith for the lines that precede the
// summary; nil ones are skipped.
type Handlers struct {
	Window func(results.Window)
	Mark   func(Mark)
}

// ReadStreamWith is ReadStream with a handler for every kind of line.
func ReadStreamWith(r io.Reader, h Handlers) (*Summary, error) {
	onWindow := h.Window
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	var windows []results.Window
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var probe struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(line, &probe); err != nil {
			return nil, fmt.Errorf("load stream line %d: %w", n, err)
		}
		switch probe.Type {
		case TypeWindow:
			var w Window
			if err := json.Unmarshal(line, &w); err != nil {
				return nil, fmt.Errorf("load stream line %d: %w", n, err)
			}
			windows = append(windows, w.Window)
			if onWindow != nil {
				onWindow(w.Window)
			}
		case TypeMark:
			var m Mark
			if err := json.Unmarshal(line, &m); err != nil {
				return nil, fmt.Errorf("load stream line %d: %w", n, err)
			}
			if h.Mark != nil {
				h.Mark(m)
			}
		case TypeSummary:
			var s Summary
			if err := json.Unmarshal(line, &s); err != nil {
				return nil, fmt.Errorf("load stream line %d: %w", n, err)
			}
			if len(s.Windows) == 0 {
				s.Windows = windows
			}
			return &s, nil
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read load stream: %w", err)
	}
	return nil, ErrNoSummary
}

func cloneHistogram(h results.Histogram) results.Histogram {
	return results.Histogram{SignificantFigures: h.SignificantFigures, Buckets: slices.Clone(h.Buckets)}
}
