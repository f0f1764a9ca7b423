package results

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	run := &Run{
		Schema: Schema, ID: "abc123", Status: StatusOK,
		Started:         time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC),
		RepetitionOrder: OrderInterleaved,
		Environment: Environment{Noise: &Noise{
			Timer:            []TimerProbe{{SleepUS: 100, Samples: 300, OvershootP50US: 60, OvershootP99US: 340}},
			CalibrationP50US: 230, CalibrationP99US: 375,
		}},
		Steps: []Step{{
			Datapath: "none", OfferedRPS: 500, Repetition: 1, Duration: Duration(6 * time.Second),
			Sequence: 1, Started: time.Date(2026, 11, 22, 0, 0, 5, 0, time.UTC),
			LatencyUS:   Latency{P50: 40, P99: 90},
			Histogram:   Histogram{SignificantFigures: 3, Buckets: []Bucket{{UpperUS: 40, Count: 10}}},
			Proof:       Proof{Source: "x", Counters: map[string]int64{"echo_requests": 10}, Verified: true},
			EngineNotes: []string{"cluster echo: max_retries (concurrent retries) has no HAProxy equivalent"},
		}},
	}
	path := filepath.Join(t.TempDir(), "results.json")
	if err := WriteFile(path, run); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Steps, run.Steps) || got.ID != run.ID || got.RepetitionOrder != OrderInterleaved ||
		!reflect.DeepEqual(got.Environment.Noise, run.Environment.Noise) {
		t.Errorf("round trip changed the run:\n got %+v\nwant %+v", got.Steps, run.Steps)
	}
	// The write is atomic: no temporary file is left beside it.
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only results.json", len(entries))
	}
	var buf bytes.Buffer
	if err := Encode(&buf, run); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"schema": "meshbench/v1"`, `"offered_rps": 500`, `"latency_us"`, `"p999"`, `"duration": "6s"`, `"repetition_order": "interleaved"`, `"overshoot_p99_us": 340`, `"sequence": 1`, `"engine_notes": [`} {
		if !strings.Contains(buf.String(), key) {
			t.Errorf("encoded results lack %s", key)
		}
	}
}

func TestDecodeRejectsOtherSchema(t *testing.T) {
	_, err := Decode(strings.NewReader(`{"schema":"meshbench/v0"}`))
	if !errors.Is(err, ErrSchema) {
		t.Fatalf("err = %v, want ErrSchema", err)
	}
}

func TestSummarize(t *testing.T) {
	step := func(dp string, rate float64, rep int, p50 float64, ok bool) Step {
		return Step{Datapath: dp, OfferedRPS: rate, Repetition: rep, LatencyUS: Latency{P50: p50}, Proof: Proof{Verified: ok}}
	}
	got := Summarize([]Step{
		step("none", 500, 1, 30, true), step("none", 2000, 1, 50, true),
		step("none", 500, 2, 40, true), step("none", 500, 3, 35, true),
		step("sidecar", 500, 1, 90, false),
	})
	if len(got) != 3 {
		t.Fatalf("got %d summaries, want 3", len(got))
	}
	n := got[0]
	if n.Datapath != "none" || n.OfferedRPS != 500 || n.Repetitions != 3 {
		t.Errorf("first summary %+v", n)
	}
	if n.P50US.Median != 35 || n.P50US.Min != 30 || n.P50US.Max != 40 || !reflect.DeepEqual(n.P50US.Values, []float64{30, 40, 35}) {
		t.Errorf("p50 spread %+v", n.P50US)
	}
	if !n.ProofVerified || got[2].ProofVerified {
		t.Errorf("proof verified: none %v, sidecar %v", n.ProofVerified, got[2].ProofVerified)
	}
}

func TestNewSpread(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want Spread
	}{
		{"empty", nil, Spread{}},
		{"odd", []float64{3, 1, 2}, Spread{Median: 2, Min: 1, Max: 3, Values: []float64{3, 1, 2}}},
		{"even", []float64{4, 1, 2, 3}, Spread{Median: 2.5, Min: 1, Max: 4, Values: []float64{4, 1, 2, 3}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := NewSpread(tt.in)
			if got.Median != tt.want.Median || got.Min != tt.want.Min || got.Max != tt.want.Max || len(got.Values) != len(tt.want.Values) {
				t.Errorf("NewSpread(%v) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}
