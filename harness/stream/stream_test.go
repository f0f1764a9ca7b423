package stream

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/meshbench/meshbench/harness/results"
)

func sampleSummary() *Summary {
	return &Summary{
		Type: TypeSummary, Targets: []string{"198.18.0.2:8080"}, OfferedRPS: 100,
		Warmup: results.Duration(time.Second), Duration: results.Duration(2 * time.Second),
		Measured: results.Duration(2 * time.Second), Sent: 200, Requests: 200, Successes: 198,
		Errors:       map[string]int64{ErrorTimeout: 2},
		SuccessRatio: 0.99, SentRPS: 100, AchievedRPS: 99,
		LatencyUS: results.Latency{Mean: 50, P50: 40, P90: 60, P99: 90, P999: 1000, Max: 1000},
		Histogram: results.Histogram{SignificantFigures: 3, Buckets: []results.Bucket{{UpperUS: 40, Count: 150}, {UpperUS: 1000, Count: 50}}},
	}
}

func TestReadStream(t *testing.T) {
	var buf bytes.Buffer
	w0 := Window{Type: TypeWindow, Window: results.Window{StartS: 0, Requests: 100, Successes: 100, SuccessRatio: 1, P50US: 40, P99US: 80}}
	w1 := Window{Type: TypeWindow, Window: results.Window{StartS: 1, Requests: 100, Successes: 98, SuccessRatio: 0.98, P50US: 41, P99US: 900}}
	if err := WriteLine(&buf, w0); err != nil {
		t.Fatal(err)
	}
	buf.WriteString("not json: a stray line\n\n")
	buf.WriteString(`{"type":"future-kind","x":1}` + "\n")
	if err := WriteLine(&buf, w1); err != nil {
		t.Fatal(err)
	}
	if err := WriteLine(&buf, sampleSummary()); err != nil {
		t.Fatal(err)
	}
	buf.WriteString(`{"type":"window","start_s":9}` + "\n") // after the summary: not read

	var seen []results.Window
	s, err := ReadStream(&buf, func(w results.Window) { seen = append(seen, w) })
	if err != nil {
		t.Fatalf("ReadStream: %v", err)
	}
	if len(seen) != 2 || seen[0] != w0.Window || seen[1] != w1.Window {
		t.Errorf("windows seen = %+v", seen)
	}
	if len(s.Windows) != 2 || s.Windows[1] != w1.Window {
		t.Errorf("summary windows = %+v", s.Windows)
	}
	if s.Successes != 198 || s.Errors[ErrorTimeout] != 2 || Count(s.Histogram) != 200 {
		t.Errorf("summary = %+v", s)
	}
}

// ReadStream returns at the summary line, without waiting for the end of
// the stream (the client process may linger).
func TestReadStreamReturnsAtSummary(t *testing.T) {
	pr, pw := io.Pipe()
	defer pr.Close()
	go func() {
		_ = WriteLine(pw, sampleSummary())
		// Never closed until the reader is done.
	}()
	done := make(chan error, 1)
	go func() {
		_, err := ReadStream(pr, nil)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ReadStream: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ReadStream did not return at the summary line")
	}
	pw.Close()
}

func TestReadStreamErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input string
		want  error
	}{
		{"empty", "", ErrNoSummary},
		{"windows only", `{"type":"window","start_s":0}` + "\n", ErrNoSummary},
		{"malformed object", `{"type":"summary","requests":"many"}` + "\n", nil},
		{"truncated object", `{"type":"summ` + "\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ReadStream(strings.NewReader(tc.input), nil)
			if err == nil || s != nil {
				t.Fatalf("ReadStream = %v, %v; want an error", s, err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestSummaryStep(t *testing.T) {
	s := sampleSummary()
	s.Windows = []results.Window{{StartS: 0, Requests: 100}}
	s.Interrupted = true
	st := s.Step()
	if st.OfferedRPS != 100 || st.AchievedRPS != 99 || st.SentRPS != 100 ||
		st.Requests != 200 || st.Successes != 198 || st.SuccessRatio != 0.99 ||
		st.Warmup != s.Warmup || st.Duration != s.Measured || !st.Interrupted ||
		st.LatencyUS != s.LatencyUS || len(st.Windows) != 1 || Count(st.Histogram) != 200 ||
		st.Errors[ErrorTimeout] != 2 {
		t.Errorf("Step() = %+v", st)
	}
	// The step owns its slices and maps.
	st.Errors[ErrorTimeout] = 99
	st.Histogram.Buckets[0].Count = 0
	if s.Errors[ErrorTimeout] != 2 || s.Histogram.Buckets[0].Count != 150 {
		t.Error("Step() shares state with the summary")
	}
}
