package workload

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/stream"
)

// runLoad runs RunClient and decodes its stream.
func runLoad(t *testing.T, ctx context.Context, o ClientOptions) *stream.Summary {
	t.Helper()
	var out bytes.Buffer
	if err := RunClient(ctx, o, &out); err != nil {
		t.Fatalf("RunClient: %v", err)
	}
	text := out.String()
	var windows, marks int
	sum, err := stream.ReadStreamWith(strings.NewReader(text), stream.Handlers{
		Window: func(results.Window) { windows++ },
		Mark:   func(stream.Mark) { marks++ },
	})
	if err != nil {
		t.Fatalf("read stream: %v\n%s", err, text)
	}
	if n := strings.Count(text, "\n"); n != windows+marks+1 {
		t.Errorf("stream has %d lines, want %d windows + %d marks + 1 summary", n, windows, marks)
	}
	// The measured window began (and was marked once) unless the client
	// was interrupted during the warm-up.
	if marks > 1 || marks == 0 && !sum.Mark.IsZero() || marks == 1 && sum.Mark.IsZero() {
		t.Errorf("%d mark lines, summary mark %v", marks, sum.Mark)
	}
	return sum
}

// checkConsistent checks the invariants of every summary.
func checkConsistent(t *testing.T, s *stream.Summary) {
	t.Helper()
	if got, fails := stream.Count(s.Histogram), stream.Count(s.FailureHistogram); got != s.Successes || got+fails != s.Requests {
		t.Errorf("histograms hold %d successes and %d failures; summary %d successes of %d requests", got, fails, s.Successes, s.Requests)
	}
	if s.KernelStamped > s.Successes || s.KernelStamped != stream.Count(s.KernelHistogram) {
		t.Errorf("kernel stamped %d (histogram %d) of %d successes", s.KernelStamped, stream.Count(s.KernelHistogram), s.Successes)
	}
	// The kernel-side latency is part of each request's latency.
	if k, l := s.KernelLatencyUS, s.LatencyUS; s.KernelStamped > 0 && (k.P50 > l.P50 || k.Max > l.Max) {
		t.Errorf("kernel-side latency %+v exceeds latency %+v", k, l)
	}
	if s.Sent != s.Requests+s.Aborted {
		t.Errorf("sent %d != requests %d + aborted %d", s.Sent, s.Requests, s.Aborted)
	}
	var errs int64
	for _, n := range s.Errors {
		errs += n
	}
	if s.Successes+errs != s.Requests {
		t.Errorf("successes %d + errors %d != requests %d", s.Successes, errs, s.Requests)
	}
	var winReq, winOK int64
	for _, w := range s.Windows {
		winReq += w.Requests
		winOK += w.Successes
		if w.Requests > 0 && w.P50US > w.P99US {
			t.Errorf("window %v: p50 > p99", w)
		}
	}
	if winReq != s.Requests || winOK != s.Successes {
		t.Errorf("windows hold %d requests, %d successes; summary %d, %d", winReq, winOK, s.Requests, s.Successes)
	}
	// The proof's view: every warm-up request completed before or after
	// the mark, and the measured window's work is its requests.
	if !s.Mark.IsZero() {
		var warmErrs int64
		for _, n := range s.WarmupWork.Errors {
			warmErrs += n
		}
		if s.WarmupWork.Successes+warmErrs+s.Stragglers != s.WarmupRequests {
			t.Errorf("warm-up: %d successes + %d errors + %d stragglers != %d requests", s.WarmupWork.Successes, warmErrs, s.Stragglers, s.WarmupRequests)
		}
		if s.Work.Successes != s.Successes || s.Work.ConnectionsOpened+s.WarmupWork.ConnectionsOpened != s.ConnectionsOpened {
			t.Errorf("work %+v, warm-up work %+v: successes %d, connections %d", s.Work, s.WarmupWork, s.Successes, s.ConnectionsOpened)
		}
		if s.Successes > 0 && (s.Work.BytesSent <= 0 || s.Work.BytesReceived <= 0) {
			t.Errorf("work bytes %+v", s.Work)
		}
	}
	l := s.LatencyUS
	if s.Successes > 0 && !(0 < l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max && l.Mean <= l.Max) {
		t.Errorf("latency not monotone: %+v", l)
	}
	// Each request's send lag is part of its latency.
	if g := s.SendLagUS; s.Successes == s.Requests && (g.P50 > l.P50 || g.P99 > l.P99 || g.Max > l.Max || g.Mean > l.Mean) {
		t.Errorf("send lag %+v exceeds latency %+v", g, l)
	}
	if l.P99 != stream.Percentile(s.Histogram, 0.99) {
		t.Errorf("p99 %v differs from the histogram's %v", l.P99, stream.Percentile(s.Histogram, 0.99))
	}
}

func TestLoadAgainstEcho(t *testing.T) {
	e := startEcho(t, 64, "pod-a")
	o := ClientOptions{
		Targets: []string{e.addr}, Rate: 500, Duration: 2 * time.Second, Warmup: 500 * time.Millisecond,
		Connections: 4, RequestSize: 64, KeepAlive: true, Timeout: 10 * time.Second, KernelStamps: true,
	}
	s := runLoad(t, context.Background(), o)
	t.Logf("sent %d, requests %d, successes %d, warm-up %d, conns %d, latency µs %+v, send lag µs %+v, kernel-side µs (%d stamped) %+v, client overhead µs %+v",
		s.Sent, s.Requests, s.Successes, s.WarmupRequests, s.ConnectionsOpened, s.LatencyUS, s.SendLagUS, s.KernelStamped, s.KernelLatencyUS, s.ClientOverheadUS)
	checkConsistent(t, s)
	if s.ConnectionsOpened != int64(o.Connections) {
		t.Errorf("opened %d connections, want exactly %d", s.ConnectionsOpened, o.Connections)
	}
	// Over loopback the kernel stamps every request and response.
	if s.KernelStamped != s.Successes {
		t.Errorf("kernel stamped %d of %d successes", s.KernelStamped, s.Successes)
	}
	// The overhead's parts cover it: their p50s add up to about its p50
	// (percentiles do not add exactly: within half, and at least one
	// part is non-zero).
	var sum float64
	for _, name := range partNames {
		p, ok := s.OverheadPartsUS[name]
		if !ok {
			t.Errorf("no overhead part %q in %v", name, s.OverheadPartsUS)
		}
		sum += p.P50
	}
	if o := s.ClientOverheadUS.P50; sum <= 0 || sum < o/2 || sum > o*2 {
		t.Errorf("overhead parts' p50s add up to %.0f µs, the overhead's p50 is %.0f µs", sum, o)
	}

	want := int64(o.Rate) * int64(o.Duration/time.Second)
	if s.Sent < want*9/10 || s.Sent > want*11/10 {
		t.Errorf("sent %d, want %d ± 10%%", s.Sent, want)
	}
	if s.Successes != s.Requests || len(s.Errors) != 0 || s.Aborted != 0 || s.Interrupted {
		t.Errorf("want every request to succeed: %+v", s)
	}
	if s.OfferedRPS != 500 || s.Measured != results.Duration(o.Duration) || s.SentRPS != float64(s.Sent)/2 || s.AchievedRPS != float64(s.Successes)/2 {
		t.Errorf("rates: offered %v, measured %s, sent %v, achieved %v", s.OfferedRPS, time.Duration(s.Measured), s.SentRPS, s.AchievedRPS)
	}
	if len(s.Windows) != 2 || s.Windows[0].StartS != 0 || s.Windows[1].StartS != 1 {
		t.Errorf("windows = %+v", s.Windows)
	}
	if s.ClientCPUSeconds <= 0 || s.ClientRSSBytes <= 0 {
		t.Errorf("client usage: cpu %v s, rss %d B", s.ClientCPUSeconds, s.ClientRSSBytes)
	}
	if s.Histogram.SignificantFigures != stream.SignificantFigures {
		t.Errorf("significant figures %d", s.Histogram.SignificantFigures)
	}

	// The echo server served the warm-up too: the client measured only the
	// rest, and every request it sent arrived.
	st := e.stats(t)
	if st.Requests <= s.Requests || s.WarmupRequests == 0 {
		t.Errorf("echo served %d, client measured %d (warm-up %d): warm-up not excluded", st.Requests, s.Requests, s.WarmupRequests)
	}
	if d := st.Requests - (s.Requests + s.WarmupRequests); d < 0 || d > 1 {
		t.Errorf("echo served %d, client completed %d measured + %d warm-up", st.Requests, s.Requests, s.WarmupRequests)
	}
	if st.BytesIn != 64*st.Requests || st.BytesOut != 64*st.Requests {
		t.Errorf("echo bytes in %d, out %d for %d requests", st.BytesIn, st.BytesOut, st.Requests)
	}
	if st.Connections != s.ConnectionsOpened || s.ConnectionsOpened < 1 {
		t.Errorf("echo accepted %d connections, client opened %d", st.Connections, s.ConnectionsOpened)
	}
}

func TestLoadRoundRobin(t *testing.T) {
	a, b := startEcho(t, 8, "a"), startEcho(t, 8, "b")
	s := runLoad(t, context.Background(), ClientOptions{
		Targets: []string{a.addr, b.addr}, Rate: 200, Duration: 500 * time.Millisecond, KeepAlive: false, Timeout: 10 * time.Second,
	})
	checkConsistent(t, s)
	sa, sb := a.stats(t), b.stats(t)
	if sa.Requests+sb.Requests != s.Requests+s.WarmupRequests || s.Successes != s.Requests {
		t.Errorf("echo a %d + b %d, client %+v", sa.Requests, sb.Requests, s)
	}
	if d := sa.Requests - sb.Requests; d < -1 || d > 1 {
		t.Errorf("round robin uneven: a %d, b %d", sa.Requests, sb.Requests)
	}
	// Without keep-alive every request opens its own connection.
	if s.ConnectionsOpened != s.Requests || sa.Connections+sb.Connections != s.Requests {
		t.Errorf("keep-alive off: %d requests, client opened %d, echo accepted %d",
			s.Requests, s.ConnectionsOpened, sa.Connections+sb.Connections)
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestLoadConnectionRefused(t *testing.T) {
	for _, target := range []string{"127.0.0.1:1", closedPort(t)} {
		t.Run(target, func(t *testing.T) {
			if c, err := net.Dial("tcp", target); err == nil {
				c.Close()
				t.Skipf("something listens on %s", target)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s := runLoad(t, ctx, ClientOptions{
				Targets: []string{target}, Rate: 100, Duration: time.Second, Warmup: 200 * time.Millisecond,
				KeepAlive: true, Timeout: 5 * time.Second,
			})
			checkConsistent(t, s)
			if s.Interrupted {
				t.Fatalf("the load hung until the test's deadline")
			}
			if s.Requests == 0 || s.Successes != 0 || s.Errors[stream.ErrorConnectionRefused] != s.Requests {
				t.Errorf("want only connection_refused: requests %d, successes %d, errors %v (%v)",
					s.Requests, s.Successes, s.Errors, s.ErrorSamples)
			}
			if s.SuccessRatio != 0 || s.AchievedRPS != 0 {
				t.Errorf("success ratio %v, achieved %v", s.SuccessRatio, s.AchievedRPS)
			}
		})
	}
}

func TestLoadCancel(t *testing.T) {
	e := startEcho(t, 64, "")
	o := ClientOptions{
		Targets: []string{e.addr}, Rate: 200, Duration: 30 * time.Second, Warmup: 300 * time.Millisecond,
		KeepAlive: true, Timeout: 10 * time.Second,
	}
	ctx, cancel := context.WithCancel(context.Background())
	timer := time.AfterFunc(1300*time.Millisecond, cancel)
	defer timer.Stop()
	start := time.Now()
	s := runLoad(t, ctx, o)
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("RunClient took %s after cancellation (duration %s)", took, o.Duration)
	}
	checkConsistent(t, s)
	if !s.Interrupted {
		t.Fatal("summary not marked interrupted")
	}
	if m := time.Duration(s.Measured); m <= 0 || m >= o.Duration {
		t.Errorf("measured %s, want the span up to the cancellation", m)
	}
	if s.Requests == 0 || s.Successes != s.Requests || len(s.Errors) != 0 {
		t.Errorf("want the requests before the cancellation to succeed: %+v", s)
	}
	if s.SentRPS <= 0 || s.SentRPS > 2*float64(o.Rate) {
		t.Errorf("sent rps %v over the measured span", s.SentRPS)
	}
}

// blackhole accepts connections and never answers.
type blackhole struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func startBlackhole(t *testing.T) *blackhole {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{ln: ln}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns = append(b.conns, c)
			b.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		b.wg.Wait()
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, c := range b.conns {
			c.Close()
		}
	})
	return b
}

// Requests in flight when the client is interrupted do not hold it until
// their timeout: they are cut and counted as aborted, not as errors.
func TestLoadCancelCutsRequestsInFlight(t *testing.T) {
	b := startBlackhole(t)
	ctx, cancel := context.WithCancel(context.Background())
	timer := time.AfterFunc(time.Second, cancel)
	defer timer.Stop()
	start := time.Now()
	s := runLoad(t, ctx, ClientOptions{
		Targets: []string{b.ln.Addr().String()}, Rate: 20, Duration: time.Minute, Warmup: 200 * time.Millisecond,
		KeepAlive: true, Timeout: time.Minute,
	})
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("RunClient took %s: requests in flight were not cut", took)
	}
	checkConsistent(t, s)
	if !s.Interrupted || s.Aborted == 0 || s.Requests != 0 || len(s.Errors) != 0 {
		t.Errorf("want only aborted requests: %+v", s)
	}
}

func TestLoadOptionsInvalid(t *testing.T) {
	good := ClientOptions{Targets: []string{"127.0.0.1:1"}, Rate: 1, Duration: time.Second}
	for _, tc := range []struct {
		name string
		mod  func(*ClientOptions)
	}{
		{"no targets", func(o *ClientOptions) { o.Targets = nil }},
		{"target without port", func(o *ClientOptions) { o.Targets = []string{"127.0.0.1"} }},
		{"zero rate", func(o *ClientOptions) { o.Rate = 0 }},
		{"zero duration", func(o *ClientOptions) { o.Duration = 0 }},
		{"negative warm-up", func(o *ClientOptions) { o.Warmup = -time.Second }},
		{"relative path", func(o *ClientOptions) { o.Path = "x" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.mod(&o)
			var out bytes.Buffer
			if err := RunClient(context.Background(), o, &out); err == nil {
				t.Errorf("RunClient accepted %+v", o)
			}
			if out.Len() != 0 {
				t.Errorf("invalid options wrote %q", out.String())
			}
		})
	}
}

// errWriter fails every write.
type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, errors.New("pipe closed") }

func TestLoadWriteError(t *testing.T) {
	e := startEcho(t, 1, "")
	err := RunClient(context.Background(), ClientOptions{Targets: []string{e.addr}, Rate: 50, Duration: 200 * time.Millisecond, KeepAlive: true}, errWriter{})
	if err == nil || !strings.Contains(err.Error(), "pipe closed") {
		t.Errorf("RunClient = %v, want the write error", err)
	}
}

// Windows are written as they close, before the load ends.
func TestLoadStreamsWindows(t *testing.T) {
	e := startEcho(t, 8, "")
	pr, pw := io.Pipe()
	var returned atomic.Bool
	errc := make(chan error, 1)
	go func() {
		err := RunClient(context.Background(), ClientOptions{
			Targets: []string{e.addr}, Rate: 200, Duration: 3 * time.Second, Window: 500 * time.Millisecond, KeepAlive: true,
		}, pw)
		returned.Store(true)
		pw.CloseWithError(err)
		errc <- err
	}()
	var early int
	s, err := stream.ReadStream(pr, func(results.Window) {
		if !returned.Load() {
			early++
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if len(s.Windows) != 6 || early == 0 {
		t.Errorf("%d windows, %d of them before the load ended", len(s.Windows), early)
	}
}

// RunClient leaves no goroutines behind (workers, connections, timers).
func TestLoadNoGoroutineLeak(t *testing.T) {
	e := startEcho(t, 8, "")
	// Let the goroutines of the readiness check's connection end: wait
	// until the count holds for 200 ms (at most 5 s).
	base := runtime.NumGoroutine()
	for stable, end := time.Now(), time.Now().Add(5*time.Second); time.Since(stable) < 200*time.Millisecond && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
		if n := runtime.NumGoroutine(); n != base {
			base, stable = n, time.Now()
		}
	}
	runLoad(t, context.Background(), ClientOptions{Targets: []string{e.addr}, Rate: 300, Duration: 500 * time.Millisecond, KeepAlive: true})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	runLoad(t, ctx, ClientOptions{Targets: []string{e.addr}, Rate: 300, Duration: 10 * time.Second, KeepAlive: false})
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after the load, %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
}
