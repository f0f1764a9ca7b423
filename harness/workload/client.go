package workload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	vegeta "github.com/tsenart/vegeta/v12/lib"
	"golang.org/x/sys/unix"

	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/stream"
)

// Load client defaults.
const (
	DefaultPath        = "/"
	DefaultWindow      = time.Second
	DefaultConnections = 8
)

// clientMemoryLimit is the heap size at which the load client collects
// garbage; below it, it does not (see RunClient).
const clientMemoryLimit = 1 << 30

// abortGrace is how long requests in flight may still complete after the
// client is interrupted before their connections are closed.
const abortGrace = 100 * time.Millisecond

// ClientOptions configures RunClient.
type ClientOptions struct {
	// Targets are host:port addresses, used round robin.
	Targets []string
	// Path is the request path (default DefaultPath).
	Path string
	// Rate is the offered rate in requests per second (open loop).
	Rate int
	// Duration is the measured window; Warmup precedes it and is not
	// measured.
	Duration time.Duration
	Warmup   time.Duration
	// Connections is the number of persistent connections, in all, spread
	// over the targets (at least one each): a request waits for a free one,
	// and the wait counts in its latency. 0: DefaultConnections.
	Connections int
	// RequestSize is the request body size: requests are POSTs with that
	// many bytes, or GETs when 0.
	RequestSize int
	// KeepAlive reuses connections between requests.
	KeepAlive bool
	// Timeout bounds each request, the wait for a connection and the body
	// included (0: vegeta.DefaultTimeout).
	Timeout time.Duration
	// KernelStamps asks the kernel to timestamp each request's last byte
	// leaving and each response's last segment arriving (SO_TIMESTAMPING),
	// for the kernel-side latency. It turns on RX timestamping for the
	// whole host while the client runs (a clock read per packet).
	KernelStamps bool
	// Window is the width of the windows reported as they close (default
	// DefaultWindow).
	Window time.Duration
	// PacerSpin is how long before each send the pacer stops sleeping and
	// spins, trading CPU for an accurate send time (0: never spin). It is
	// capped at a quarter of the interval.
	PacerSpin time.Duration
	Logger    *slog.Logger
}

// withDefaults returns o with defaults filled in, or an error when o is
// invalid.
func (o ClientOptions) withDefaults() (ClientOptions, error) {
	if o.Path == "" {
		o.Path = DefaultPath
	}
	if o.Window == 0 {
		o.Window = DefaultWindow
	}
	if o.Timeout == 0 {
		o.Timeout = vegeta.DefaultTimeout
	}
	if o.Connections == 0 {
		o.Connections = DefaultConnections
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	var errs []error
	if len(o.Targets) == 0 {
		errs = append(errs, errors.New("no targets"))
	}
	for _, t := range o.Targets {
		if _, _, err := net.SplitHostPort(t); err != nil {
			errs = append(errs, fmt.Errorf("target %q: %w", t, err))
		}
	}
	if !strings.HasPrefix(o.Path, "/") {
		errs = append(errs, fmt.Errorf("path %q does not start with /", o.Path))
	}
	if o.Rate < 1 || o.Rate > int(time.Second) {
		errs = append(errs, fmt.Errorf("rate %d out of range", o.Rate))
	}
	if o.Duration <= 0 {
		errs = append(errs, fmt.Errorf("duration %s is not positive", o.Duration))
	}
	if o.Warmup < 0 {
		errs = append(errs, fmt.Errorf("negative warm-up %s", o.Warmup))
	}
	if o.Window < 0 {
		errs = append(errs, fmt.Errorf("negative window %s", o.Window))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("negative timeout %s", o.Timeout))
	}
	if o.Connections < 0 || o.RequestSize < 0 {
		errs = append(errs, errors.New("negative connections or request size"))
	}
	if err := errors.Join(errs...); err != nil {
		return o, fmt.Errorf("load options: %w", err)
	}
	return o, nil
}

// RunClient sends an open-loop load at o.Rate for o.Warmup + o.Duration and
// writes the results to out as JSON lines (see package stream): a window line
// as each window of the measured window closes, then one summary line.
// Latency is measured from each request's intended send time, so a slow
// server cannot slow the client down and hide its own latency (coordinated
// omission). Requests intended during the warm-up are not measured.
//
// When ctx ends, the attack stops; requests in flight get a short grace and
// are then cut off and counted as aborted; the summary of what was measured
// is written with Interrupted set, and RunClient returns nil. It returns an
// error for invalid options or when out cannot be written.
func RunClient(ctx context.Context, o ClientOptions, out io.Writer) error {
	o, err := o.withDefaults()
	if err != nil {
		return err
	}
	log := o.Logger

	// vegeta and net/http's client allocate about 2.5 KB per request; a
	// collection during the measured window lands on some requests'
	// latency. Collect only if the heap nears a limit, for the run.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(clientMemoryLimit))

	// Our own transport (see transport.go): exactly o.Connections
	// persistent connections, written and read on the goroutine vegeta
	// times each request on, with the kernel's timestamps; a dialer that
	// can cut every connection when the client is interrupted. No proxy
	// from the environment, no redirects followed: traffic goes only to
	// the targets.
	dialer := newAbortDialer(30 * time.Second)
	total := o.Rate*int((o.Warmup+o.Duration)/time.Second+1) + 1024
	timings := newSeqLog(total)
	tr := newTransport(o, dialer, timings)
	atk := vegeta.NewAttacker(
		// No client timeout: net/http would start a goroutine per request
		// to enforce it. The transport enforces o.Timeout with deadlines.
		vegeta.Client(&http.Client{Transport: tr}),
		// Unbounded workers (vegeta's default, stated here on purpose): when
		// every worker waits on a slow response the pacer starts another,
		// so requests keep leaving at their intended times. Bounding the
		// workers would let the server throttle the client: coordinated
		// omission.
		vegeta.MaxWorkers(math.MaxUint64),
		vegeta.MaxBody(0),
		vegeta.Redirects(vegeta.NoFollow),
	)

	rec := newRecorder(o, newSchedule(time.Time{}, o.Rate, o.Warmup, o.Duration, o.Window))
	rec.timings = timings
	targeter := newTargeter(o)
	pacer := newPrecisePacer(o.Rate, o.PacerSpin)
	rec.spin = pacer.margin

	log.Info("load starting", "targets", strings.Join(o.Targets, ","), "rate", o.Rate,
		"warmup", o.Warmup, "duration", o.Duration, "keep_alive", o.KeepAlive, "request_size", o.RequestSize,
		"connections", o.Connections, "kernel_stamps", o.KernelStamps, "pacer_spin", o.PacerSpin)

	var (
		writeMu  sync.Mutex
		writeErr error
	)
	emit := func(v any) {
		writeMu.Lock()
		defer writeMu.Unlock()
		if writeErr == nil {
			writeErr = stream.WriteLine(out, v)
		}
	}

	rec.sched.began = time.Now()
	results := atk.Attack(targeter, pacer, o.Warmup+o.Duration, "meshbench")
	// The measured window begins: mark it on the stream at once (the
	// harness reads the datapath's counters on the mark), note what the
	// client had done by then, and start counting its own cost.
	usageStart := make(chan unix.Rusage, 1)
	usageTimer := time.AfterFunc(o.Warmup, func() {
		now := time.Now()
		rec.markBytes = [2]int64{dialer.sent.Load(), dialer.received.Load()}
		rec.markConns = dialer.opened.Load()
		rec.markAt.Store(&now)
		emit(stream.Mark{Type: stream.TypeMark, Time: now})
		var ru unix.Rusage
		_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
		usageStart <- ru
	})
	defer usageTimer.Stop()

	// On cancellation: note when, stop the pacer, and after a short grace
	// cut the connections of the requests still in flight.
	var abortAt atomic.Pointer[time.Time]
	var cutTimer *time.Timer
	var cutMu sync.Mutex
	abortDone := make(chan struct{})
	stopAbort := context.AfterFunc(ctx, func() {
		defer close(abortDone)
		now := time.Now()
		abortAt.Store(&now)
		atk.Stop()
		cutMu.Lock()
		cutTimer = time.AfterFunc(abortGrace, dialer.abort)
		cutMu.Unlock()
	})

	for res := range results {
		var at time.Time
		if p := abortAt.Load(); p != nil {
			at = *p
		}
		rec.add(res, at)
		for _, w := range rec.closedWindows() {
			emit(stream.Window{Type: stream.TypeWindow, Window: w})
		}
	}
	interrupted := !stopAbort()
	if interrupted {
		<-abortDone
	}
	cutMu.Lock()
	if cutTimer != nil {
		cutTimer.Stop()
	}
	cutMu.Unlock()
	dialer.abort()

	var at time.Time
	if p := abortAt.Load(); p != nil {
		at = *p
	}
	for _, w := range rec.flushWindows(at) {
		emit(stream.Window{Type: stream.TypeWindow, Window: w})
	}
	usageTimer.Stop()
	sum := rec.summary(at, interrupted, dialer)
	select {
	case ru0 := <-usageStart:
		var ru1 unix.Rusage
		_ = unix.Getrusage(unix.RUSAGE_SELF, &ru1)
		sum.ClientCPUSeconds = cpuSeconds(ru1) - cpuSeconds(ru0)
		sum.ClientContextSwitches = (ru1.Nvcsw + ru1.Nivcsw) - (ru0.Nvcsw + ru0.Nivcsw)
		sum.ClientRSSBytes = ru1.Maxrss * 1024
	default:
		// Interrupted during warm-up: nothing was measured.
	}
	emit(sum)
	writeMu.Lock() // writeErr: a late mark may still be writing
	defer writeMu.Unlock()
	log.Info("load finished", "sent", sum.Sent, "requests", sum.Requests, "successes", sum.Successes,
		"p50_us", sum.LatencyUS.P50, "p99_us", sum.LatencyUS.P99, "interrupted", interrupted)
	if writeErr != nil {
		return fmt.Errorf("load: %w", writeErr)
	}
	return nil
}

// cpuSeconds returns the user + system CPU time of ru in seconds.
func cpuSeconds(ru unix.Rusage) float64 {
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// newTargeter returns a vegeta targeter that cycles through o.Targets.
// Only the URL matters: the transport sends each target's request as it
// serialised it once (method, headers and body).
func newTargeter(o ClientOptions) vegeta.Targeter {
	urls := make([]string, len(o.Targets))
	for i, t := range o.Targets {
		urls[i] = "http://" + t + o.Path
	}
	var next atomic.Uint64
	return func(t *vegeta.Target) error {
		i := next.Add(1) - 1
		t.Method = http.MethodGet
		t.URL = urls[i%uint64(len(urls))]
		return nil
	}
}

// recorder accumulates the results of one attack. It is used by one
// goroutine.
type recorder struct {
	o     ClientOptions
	sched schedule

	// Distributions over the measured window: latency of successes and of
	// failures (from the intended send time), send lag (send time −
	// intended time), kernel-side latency of the successes the kernel
	// stamped, and each such success's client overhead (its latency −
	// its kernel-side latency) and the overhead's parts.
	ok, fail, lag, kern, overhead dist
	parts                         [partCount]dist
	// timings holds the transport's timings by sequence number.
	timings *seqLog
	// spin is the pacer's spin margin.
	spin time.Duration

	sent, requests int64
	successes      int64
	aborted        int64
	warmupRequests int64
	errors         map[string]int64
	samples        map[string]string

	windows  []*windowAcc
	nextEmit int

	// markAt is when the measured window began (nil before): warm-up
	// requests that complete before it are the warm-up's work, those that
	// complete after it stragglers. markBytes (sent, received) and
	// markConns are the dialer's counts at markAt, written before it.
	markAt     atomic.Pointer[time.Time]
	markBytes  [2]int64
	markConns  int64
	warm       stream.Work
	stragglers int64
}

// The parts of a request's client overhead, in the order they happen.
const (
	partSendLag   = iota // intended send time → vegeta starts the request (pacer, goroutine hand-off)
	partToSocket         // → the request is written (vegeta, net/http's client, a free connection)
	partToWire           // → the kernel stamps its last byte leaving (the client socket's TCP/IP send path, egress netfilter)
	partFromWire         // the kernel stamps the response arriving → the client has read it (TCP/IP receive path, wake-up, read)
	partAfterRead        // → vegeta hands the result over
	partCount
)

// partNames name the parts in results (stream.OverheadParts's keys).
var partNames = [partCount]string{"send_lag", "to_socket", "to_wire", "from_wire", "after_read"}

// recordTimings records a success's kernel-side latency, its client
// overhead and the overhead's parts, when the kernel stamped it.
func (r *recorder) recordTimings(res *vegeta.Result, lat time.Duration) {
	tm := r.timings.get(res.Seq)
	k := tm.kernel()
	if k <= 0 || tm.write == 0 || tm.read == 0 {
		return
	}
	r.kern.record(k)
	r.overhead.record(max(lat-k, 0))
	intended, start, end := r.sched.intended(res.Seq).UnixNano(), res.Timestamp.UnixNano(), res.End().UnixNano()
	for i, d := range [partCount]int64{start - intended, tm.write - start, tm.tx - tm.write, tm.read - tm.rx, end - tm.read} {
		r.parts[i].record(time.Duration(max(d, 0)))
	}
}

// dist is a latency distribution: a histogram and the exact sum.
type dist struct {
	hdr   *hdrhistogram.Histogram
	sumNS float64
}

func newDist() dist { return dist{hdr: stream.NewHDR()} }

func (d *dist) record(v time.Duration) {
	_ = d.hdr.RecordValue(toUS(v)) // in range by construction
	d.sumNS += float64(v)
}

// latency returns the distribution's percentiles and its histogram.
func (d *dist) latency() (results.Latency, results.Histogram) {
	h := stream.HistogramFromHDR(d.hdr)
	return latency(h, d.sumNS), h
}

// windowAcc accumulates one window.
type windowAcc struct {
	received            int64 // results of requests sent in the window, aborted included
	requests, successes int64
	hdr                 *hdrhistogram.Histogram // nil until the first request
}

func newRecorder(o ClientOptions, sched schedule) *recorder {
	r := &recorder{
		o:        o,
		sched:    sched,
		ok:       newDist(),
		fail:     newDist(),
		lag:      newDist(),
		kern:     newDist(),
		overhead: newDist(),
		errors:   map[string]int64{},
		samples:  map[string]string{},
		windows:  make([]*windowAcc, sched.windows()),
	}
	for i := range r.windows {
		r.windows[i] = &windowAcc{}
	}
	for i := range r.parts {
		r.parts[i] = newDist()
	}
	return r
}

// add records one result. abortAt is when the client was interrupted (zero
// if it was not): a failure that ends after it was cut short by us.
func (r *recorder) add(res *vegeta.Result, abortAt time.Time) {
	end := res.End()
	ok := succeeded(res)
	cut := !ok && !abortAt.IsZero() && !end.Before(abortAt)
	if !r.sched.measured(res.Seq) {
		if r.sched.offset(res.Seq) <= 0 && !cut {
			r.warmupRequests++
			if m := r.markAt.Load(); m != nil && end.After(*m) {
				r.stragglers++
			} else if ok {
				r.warm.Successes++
			} else {
				if r.warm.Errors == nil {
					r.warm.Errors = map[string]int64{}
				}
				r.warm.Errors[classify(res)]++
			}
		}
		return
	}
	r.sent++
	var w *windowAcc
	if i := r.sched.windowOf(res.Seq); i >= 0 && i < len(r.windows) {
		w = r.windows[i]
		w.received++
	}
	if cut {
		r.aborted++
		return
	}
	lat := r.sched.latency(res.Seq, end)
	r.lag.record(r.sched.latency(res.Seq, res.Timestamp))
	r.requests++
	if ok {
		r.successes++
		r.ok.record(lat)
		r.recordTimings(res, lat)
	} else {
		r.fail.record(lat)
		class := classify(res)
		r.errors[class]++
		if _, seen := r.samples[class]; !seen {
			r.samples[class] = res.Error
		}
	}
	if w != nil {
		w.requests++
		if ok {
			if w.hdr == nil {
				w.hdr = stream.NewHDR()
			}
			_ = w.hdr.RecordValue(toUS(lat))
			w.successes++
		}
	}
}

// toUS returns d in whole microseconds, rounded up, within the range of
// the histograms.
func toUS(d time.Duration) int64 {
	us := int64((d + time.Microsecond - 1) / time.Microsecond)
	return min(max(us, stream.LowestUS), stream.HighestUS)
}

// latency returns the summary percentiles of h, with the exact mean.
func latency(h results.Histogram, sumNS float64) results.Latency {
	n := stream.Count(h)
	if n == 0 {
		return results.Latency{}
	}
	return results.Latency{
		Mean: sumNS / float64(n) / 1e3,
		P50:  stream.Percentile(h, 0.50),
		P90:  stream.Percentile(h, 0.90),
		P99:  stream.Percentile(h, 0.99),
		P999: stream.Percentile(h, 0.999),
		Max:  stream.Percentile(h, 1),
	}
}

// closedWindows returns, in order, the windows not yet returned whose every
// request has completed.
func (r *recorder) closedWindows() []results.Window {
	var out []results.Window
	for r.nextEmit < len(r.windows) && r.windows[r.nextEmit].received >= r.sched.expected(r.nextEmit) {
		out = append(out, r.window(r.nextEmit))
		r.nextEmit++
	}
	return out
}

// flushWindows returns the windows not yet returned that began before the
// end of the measured span (or hold results), in order.
func (r *recorder) flushWindows(abortAt time.Time) []results.Window {
	span := r.measuredSpan(abortAt)
	last := int((span + r.sched.window - 1) / r.sched.window)
	for i, w := range r.windows {
		if w.received > 0 {
			last = max(last, i+1)
		}
	}
	last = min(last, len(r.windows))
	var out []results.Window
	for ; r.nextEmit < last; r.nextEmit++ {
		out = append(out, r.window(r.nextEmit))
	}
	return out
}

// window returns the record of window i and frees its histogram.
func (r *recorder) window(i int) results.Window {
	w := r.windows[i]
	rw := results.Window{
		StartS:    (time.Duration(i) * r.sched.window).Seconds(),
		Requests:  w.requests,
		Successes: w.successes,
	}
	if w.requests > 0 {
		rw.SuccessRatio = float64(w.successes) / float64(w.requests)
	}
	if w.hdr != nil {
		h := stream.HistogramFromHDR(w.hdr)
		rw.P50US = stream.Percentile(h, 0.50)
		rw.P90US = stream.Percentile(h, 0.90)
		rw.P99US = stream.Percentile(h, 0.99)
	}
	w.hdr = nil
	return rw
}

// measuredSpan returns the actual span of the measured window: its
// configured duration, or up to the interruption.
func (r *recorder) measuredSpan(abortAt time.Time) time.Duration {
	if abortAt.IsZero() {
		return r.sched.duration
	}
	start := r.sched.began.Add(r.sched.warmup)
	return min(max(abortAt.Sub(start), 0), r.sched.duration)
}

// summary returns the summary line; d is the dialer whose counts it
// reports.
func (r *recorder) summary(abortAt time.Time, interrupted bool, d *abortDialer) stream.Summary {
	opened := d.opened.Load()
	span := r.measuredSpan(abortAt)
	s := stream.Summary{
		Type:              stream.TypeSummary,
		Targets:           r.o.Targets,
		OfferedRPS:        float64(r.o.Rate),
		Warmup:            results.Duration(r.o.Warmup),
		Duration:          results.Duration(r.o.Duration),
		Measured:          results.Duration(span),
		WarmupRequests:    r.warmupRequests,
		Sent:              r.sent,
		Requests:          r.requests,
		Successes:         r.successes,
		Aborted:           r.aborted,
		Connections:       r.o.Connections,
		ConnectionsOpened: opened,
		Interrupted:       interrupted,
		KernelStamps:      r.o.KernelStamps,
		PacerSpin:         results.Duration(r.spin),
	}
	s.LatencyUS, s.Histogram = r.ok.latency()
	s.FailureLatencyUS, s.FailureHistogram = r.fail.latency()
	s.KernelLatencyUS, s.KernelHistogram = r.kern.latency()
	s.ClientOverheadUS, _ = r.overhead.latency()
	s.KernelStamped = stream.Count(s.KernelHistogram)
	if s.KernelStamped > 0 {
		s.OverheadPartsUS = map[string]results.Latency{}
		for i := range r.parts {
			s.OverheadPartsUS[partNames[i]], _ = r.parts[i].latency()
		}
	}
	if len(r.errors) > 0 {
		s.Errors = r.errors
		s.ErrorSamples = r.samples
	}
	if m := r.markAt.Load(); m != nil {
		s.Mark = *m
		s.WarmupWork = r.warm
		s.WarmupWork.BytesSent, s.WarmupWork.BytesReceived = r.markBytes[0], r.markBytes[1]
		s.WarmupWork.ConnectionsOpened = r.markConns
		s.Stragglers = r.stragglers
		s.Work = stream.Work{
			Successes: r.successes, Errors: maps.Clone(r.errors),
			BytesSent: d.sent.Load() - r.markBytes[0], BytesReceived: d.received.Load() - r.markBytes[1],
			ConnectionsOpened: opened - r.markConns,
		}
	}
	if r.requests > 0 {
		s.SuccessRatio = float64(r.successes) / float64(r.requests)
		s.SendLagUS, _ = r.lag.latency()
	}
	if span > 0 {
		s.SentRPS = float64(r.sent) / span.Seconds()
		s.AchievedRPS = float64(r.successes) / span.Seconds()
	}
	return s
}
