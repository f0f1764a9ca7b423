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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	vegeta "github.com/tsenart/vegeta/v12/lib"
	"golang.org/x/sys/unix"

	"github.com/meshbench/meshbench/harness/load"
	"github.com/meshbench/meshbench/harness/results"
)

// Load client defaults.
const (
	DefaultPath   = "/"
	DefaultWindow = time.Second
)

// abortGrace is how long requests in flight may still complete after the
// client is interrupted before their connections are closed.
const abortGrace = 100 * time.Millisecond

// LoadOptions configures RunLoad.
type LoadOptions struct {
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
	// Connections is the number of idle connections kept per target
	// (vegeta.Connections); 0 keeps vegeta's default. It does not cap the
	// connections in use: an open-loop client opens more when all are busy.
	Connections int
	// RequestSize is the request body size: requests are POSTs with that
	// many bytes, or GETs when 0.
	RequestSize int
	// KeepAlive reuses connections between requests.
	KeepAlive bool
	// Timeout bounds each request, body included (0: vegeta.DefaultTimeout).
	Timeout time.Duration
	// Window is the width of the windows reported as they close (default
	// DefaultWindow).
	Window time.Duration
	// MaxBodyCapture is how many bytes of each response body are kept in
	// memory (-1: all). Bodies are always read to the end.
	MaxBodyCapture int64
	// PacerSpin is how long before each send the pacer stops sleeping and
	// spins, trading CPU for an accurate send time (0: DefaultPacerSpin;
	// negative: never spin). It is capped at a quarter of the interval.
	PacerSpin time.Duration
	Logger    *slog.Logger
}

// withDefaults returns o with defaults filled in, or an error when o is
// invalid.
func (o LoadOptions) withDefaults() (LoadOptions, error) {
	if o.Path == "" {
		o.Path = DefaultPath
	}
	if o.Window == 0 {
		o.Window = DefaultWindow
	}
	if o.Timeout == 0 {
		o.Timeout = vegeta.DefaultTimeout
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

// RunLoad sends an open-loop load at o.Rate for o.Warmup + o.Duration and
// writes the results to out as JSON lines (see package load): a window line
// as each window of the measured window closes, then one summary line.
// Latency is measured from each request's intended send time, so a slow
// server cannot slow the client down and hide its own latency (coordinated
// omission). Requests intended during the warm-up are not measured.
//
// When ctx ends, the attack stops; requests in flight get a short grace and
// are then cut off and counted as aborted; the summary of what was measured
// is written with Interrupted set, and RunLoad returns nil. It returns an
// error for invalid options or when out cannot be written.
func RunLoad(ctx context.Context, o LoadOptions, out io.Writer) error {
	o, err := o.withDefaults()
	if err != nil {
		return err
	}
	log := o.Logger

	// Our own transport: no proxy from the environment (vegeta's default
	// honours HTTP_PROXY, which would send the load elsewhere), and a
	// dialer that can cut every connection when the client is interrupted.
	dialer := newAbortDialer(30 * time.Second)
	tr := &http.Transport{
		DialContext:         dialer.DialContext,
		DisableCompression:  true,
		MaxIdleConnsPerHost: vegeta.DefaultConnections,
	}
	defer tr.CloseIdleConnections()
	atkOpts := []func(*vegeta.Attacker){
		vegeta.Client(&http.Client{Transport: tr}),
		// Unbounded workers (vegeta's default, stated here on purpose): when
		// every worker waits on a slow response the pacer starts another,
		// so requests keep leaving at their intended times. Bounding the
		// workers would let the server throttle the client: coordinated
		// omission.
		vegeta.MaxWorkers(math.MaxUint64),
		vegeta.KeepAlive(o.KeepAlive),
		vegeta.Timeout(o.Timeout),
		vegeta.MaxBody(o.MaxBodyCapture),
		// Never follow a redirect: traffic goes only to the targets.
		vegeta.Redirects(vegeta.NoFollow),
	}
	if o.Connections > 0 {
		atkOpts = append(atkOpts, vegeta.Connections(o.Connections))
	}
	atk := vegeta.NewAttacker(atkOpts...)
	// vegeta.KeepAlive(false) installs vegeta's own dialer; put ours back.
	tr.DialContext = dialer.DialContext

	rec := newRecorder(o, newSchedule(time.Time{}, o.Rate, o.Warmup, o.Duration, o.Window))
	targeter := newTargeter(o)
	pacer := newPrecisePacer(o.Rate, o.PacerSpin)

	log.Info("load starting", "targets", strings.Join(o.Targets, ","), "rate", o.Rate,
		"warmup", o.Warmup, "duration", o.Duration, "keep_alive", o.KeepAlive, "request_size", o.RequestSize)

	var (
		writeMu  sync.Mutex
		writeErr error
	)
	emit := func(v any) {
		writeMu.Lock()
		defer writeMu.Unlock()
		if writeErr == nil {
			writeErr = load.WriteLine(out, v)
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
		emit(load.Mark{Type: load.TypeMark, Time: now})
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
			emit(load.Window{Type: load.TypeWindow, Window: w})
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
		emit(load.Window{Type: load.TypeWindow, Window: w})
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
func newTargeter(o LoadOptions) vegeta.Targeter {
	method := http.MethodGet
	var body []byte
	if o.RequestSize > 0 {
		method = http.MethodPost
		body = make([]byte, o.RequestSize)
		for i := range body {
			body[i] = 'a' + byte(i%26)
		}
	}
	urls := make([]string, len(o.Targets))
	for i, t := range o.Targets {
		urls[i] = "http://" + t + o.Path
	}
	hdr := http.Header{}
	if len(body) > 0 {
		hdr.Set("Content-Type", "application/octet-stream")
	}
	var next atomic.Uint64
	return func(t *vegeta.Target) error {
		i := next.Add(1) - 1
		t.Method = method
		t.URL = urls[i%uint64(len(urls))]
		t.Body = body // shared: vegeta only reads it
		t.Header = hdr
		return nil
	}
}

// recorder accumulates the results of one attack. It is used by one
// goroutine.
type recorder struct {
	o     LoadOptions
	sched schedule

	hdr            *hdrhistogram.Histogram
	lag            *hdrhistogram.Histogram // send time − intended time, µs
	sumNS, lagNS   float64
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
	warm       load.Work
	stragglers int64
}

// windowAcc accumulates one window.
type windowAcc struct {
	received            int64 // results of requests sent in the window, aborted included
	requests, successes int64
	hdr                 *hdrhistogram.Histogram // nil until the first request
}

func newRecorder(o LoadOptions, sched schedule) *recorder {
	r := &recorder{
		o:       o,
		sched:   sched,
		hdr:     load.NewHDR(),
		lag:     load.NewHDR(),
		errors:  map[string]int64{},
		samples: map[string]string{},
		windows: make([]*windowAcc, sched.windows()),
	}
	for i := range r.windows {
		r.windows[i] = &windowAcc{}
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
	us := toUS(lat)
	_ = r.hdr.RecordValue(us) // in range by construction
	r.sumNS += float64(lat)
	lag := r.sched.latency(res.Seq, res.Timestamp)
	_ = r.lag.RecordValue(toUS(lag))
	r.lagNS += float64(lag)
	r.requests++
	if ok {
		r.successes++
	} else {
		class := classify(res)
		r.errors[class]++
		if _, seen := r.samples[class]; !seen {
			r.samples[class] = res.Error
		}
	}
	if w != nil {
		if w.hdr == nil {
			w.hdr = load.NewHDR()
		}
		_ = w.hdr.RecordValue(us)
		w.requests++
		if ok {
			w.successes++
		}
	}
}

// toUS returns d in whole microseconds, rounded up, within the range of
// the histograms.
func toUS(d time.Duration) int64 {
	us := int64((d + time.Microsecond - 1) / time.Microsecond)
	return min(max(us, load.LowestUS), load.HighestUS)
}

// latency returns the summary percentiles of h, with the exact mean.
func latency(h results.Histogram, sumNS float64) results.Latency {
	n := load.Count(h)
	if n == 0 {
		return results.Latency{}
	}
	return results.Latency{
		Mean: sumNS / float64(n) / 1e3,
		P50:  load.Percentile(h, 0.50),
		P90:  load.Percentile(h, 0.90),
		P99:  load.Percentile(h, 0.99),
		P999: load.Percentile(h, 0.999),
		Max:  load.Percentile(h, 1),
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
		h := load.HistogramFromHDR(w.hdr)
		rw.P50US = load.Percentile(h, 0.50)
		rw.P99US = load.Percentile(h, 0.99)
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
func (r *recorder) summary(abortAt time.Time, interrupted bool, d *abortDialer) load.Summary {
	opened := d.opened.Load()
	span := r.measuredSpan(abortAt)
	s := load.Summary{
		Type:              load.TypeSummary,
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
		ConnectionsOpened: opened,
		Histogram:         load.HistogramFromHDR(r.hdr),
		Interrupted:       interrupted,
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
		s.Work = load.Work{
			Successes: r.successes, Errors: maps.Clone(r.errors),
			BytesSent: d.sent.Load() - r.markBytes[0], BytesReceived: d.received.Load() - r.markBytes[1],
			ConnectionsOpened: opened - r.markConns,
		}
	}
	if r.requests > 0 {
		s.SuccessRatio = float64(r.successes) / float64(r.requests)
		s.LatencyUS = latency(s.Histogram, r.sumNS)
		s.SendLagUS = latency(load.HistogramFromHDR(r.lag), r.lagNS)
	}
	if span > 0 {
		s.SentRPS = float64(r.sent) / span.Seconds()
		s.AchievedRPS = float64(r.successes) / span.Seconds()
	}
	return s
}
