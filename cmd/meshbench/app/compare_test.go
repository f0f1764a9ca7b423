package app

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshbench/meshbench/harness/results"
)

// gateRun is a run of none and sidecar at one rate over reps repetitions:
// p99 = p99s[i], the other figures fixed, on machine kernel.
func gateRun(id, kernel string, sidecarP99 []float64) *results.Run {
	run := &results.Run{Schema: results.Schema, ID: id, Status: results.StatusOK,
		Environment: results.Environment{Hostname: "h", Kernel: kernel, OS: "linux", CPUModel: "cpu", Cores: 2, MemoryMiB: 1000,
			GoVersion: "go1", Commit: id, Noise: &results.Noise{CalibrationP50US: 200, CalibrationP99US: 400}}}
	for i, p99 := range sidecarP99 {
		for _, dp := range []struct {
			name string
			p99  float64
		}{{"none", 100 + float64(i)}, {"sidecar", p99}} {
			run.Steps = append(run.Steps, results.Step{Datapath: dp.name, Service: "echo", Repetition: i + 1, OfferedRPS: 500,
				AchievedRPS: 500, SuccessRatio: 1, LatencyUS: results.Latency{P50: 50 + float64(i), P99: dp.p99, P999: 2 * dp.p99},
				Cost: results.Cost{CPUMicrosPerRequest: 80 + float64(i), SegmentsPerRequest: 4}})
		}
	}
	run.Summaries = results.Summarize(run.Steps)
	return run
}

func writeRun(t *testing.T, dir string, run *results.Run) string {
	t.Helper()
	path := filepath.Join(dir, run.ID+".json")
	if err := results.WriteFile(path, run); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCompareCommand(t *testing.T) {
	dir := t.TempDir()
	same := []float64{200, 204, 198, 202, 199}
	worse := []float64{300, 306, 297, 303, 299}
	base := writeRun(t, dir, gateRun("base", "6.18", same))
	again := writeRun(t, dir, gateRun("again", "6.18", same))
	slow := writeRun(t, dir, gateRun("slow", "6.18", worse))
	otherKernel := writeRun(t, dir, gateRun("otherkernel", "6.19", same))
	slowOtherKernel := writeRun(t, dir, gateRun("slowother", "6.19", worse))
	tests := []struct {
		name    string
		args    []string
		wantErr []error // errors.Is each; nil: success
		out     []string
		stderr  string
	}{
		{"same commit passes", []string{base, again}, nil, []string{"No regression"}, ""},
		{"regression", []string{base, slow}, []error{ErrRegression}, []string{"REGRESSION"}, ""},
		{"other kernel warns", []string{base, otherKernel}, nil, []string{"THE ENVIRONMENTS DIFFER: kernel 6.18 → 6.19"}, "WARNING"},
		{"other kernel, strict", []string{base, otherKernel, "--strict-env"}, []error{ErrEnvironment}, nil, "WARNING"},
		{"other kernel, regressed ratio, strict", []string{"--strict-env", base, slowOtherKernel}, []error{ErrEnvironment, ErrRegression}, []string{"REGRESSION"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := Run(context.Background(), append([]string{"compare"}, tc.args...), &out, &errb)
			if tc.wantErr == nil && err != nil {
				t.Fatalf("err %v", err)
			}
			for _, want := range tc.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("err %v, want %v", err, want)
				}
			}
			for _, s := range tc.out {
				if !strings.Contains(out.String(), s) {
					t.Errorf("output lacks %q:\n%s", s, out.String())
				}
			}
			if !strings.Contains(errb.String(), tc.stderr) {
				t.Errorf("stderr %q lacks %q", errb.String(), tc.stderr)
			}
		})
	}
	// --markdown writes the same verdict.
	md := filepath.Join(dir, "cmp.md")
	if err := Run(context.Background(), []string{"compare", base, slow, "--markdown", md}, &bytes.Buffer{}, &bytes.Buffer{}); !errors.Is(err, ErrRegression) {
		t.Fatalf("err %v", err)
	}
	if b, err := os.ReadFile(md); err != nil || !strings.Contains(string(b), "❌") {
		t.Errorf("markdown %q (%v)", b, err)
	}
}

func TestGateCheckCommand(t *testing.T) {
	dir := t.TempDir()
	p99 := []float64{200, 204, 198, 202, 199, 201, 203, 197}
	path := writeRun(t, dir, gateRun("eight", "6.18", p99))
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"gate-check", path, "--half", "4"}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"8 repetitions of commit eight", "all 70 ordered splits into 4 base + 4 new", "0.05 (the gate)", "power: sidecar"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	for _, args := range [][]string{{"gate-check"}, {"gate-check", path, "--alpha", "2"}} {
		if err := Run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{}); !errors.Is(err, ErrUsage) {
			t.Errorf("%q: err %v, want a usage error", args, err)
		}
	}
}
