package reports

import (
	"strings"
	"testing"

	"github.com/meshbench/meshbench/harness/results"
)

func TestFmtSeconds(t *testing.T) {
	for _, tt := range []struct {
		v, res float64
		want   string
	}{{-1, 0.1, "never"}, {0.3, 0.1, "0.3 s"}, {2, 1, "2 s"}, {0.25, 0.01, "0.25 s"}, {1.23456, 0.001, "1.235 s"}, {1, 0, "1 s"}} {
		if got := fmtSeconds(tt.v, tt.res); got != tt.want {
			t.Errorf("fmtSeconds(%v, %v) = %q, want %q", tt.v, tt.res, got, tt.want)
		}
	}
}

func TestFaultRows(t *testing.T) {
	steps := []results.Step{{
		Datapath: "sidecar", OfferedRPS: 200, Repetition: 1, WindowS: 0.1,
		Faults: []results.FaultRecord{
			{Name: "kill", Fault: "pod-kill", StartS: 9, EndS: 11.04, Errors: 12, SharedErrors: 3, SharedWith: []string{"slow"},
				DetectS: 0.1, RecoverS: 0.7, ResolutionS: 0.1,
				Activity:  &results.FaultActivity{Active: true, Detail: "killed 1 server processes"},
				Readiness: &results.ReadinessRecord{PeriodS: 1, FailureThreshold: 1, SuccessThreshold: 1, NotReadyS: 0.42, ReadyS: 0.61}},
			{Name: "idle", Fault: "loss", StartS: 1, EndS: 2, DetectS: -1, RecoverS: 0, ResolutionS: 0.1,
				Activity: &results.FaultActivity{Detail: "its DROP rules matched no packet"}},
			{Name: "quiet", Fault: "bandwidth", StartS: 1, EndS: 2, DetectS: -1, RecoverS: 0, AllowInactive: true,
				Activity: &results.FaultActivity{Detail: "the token bucket passed all 10 packets"}},
		},
	}}
	rows := faultRows(steps)
	if len(rows) != 3 {
		t.Fatalf("%d rows", len(rows))
	}
	k := rows[0]
	if k.Errors != "12 (+3 shared with slow)" || k.Detect != "0.1 s" || k.Recover != "0.7 s" || k.Window != "9.0 s–11.0 s" || !strings.Contains(k.Readiness, "probe every 1 s, 1/1") || k.Inactive ||
		!strings.Contains(k.Readiness, "out 0.42 s after the kill, back 0.61 s after the restart") {
		t.Errorf("kill row %+v", k)
	}
	if r := rows[1]; !r.Inactive || !strings.HasPrefix(r.Evidence, "INACTIVE: ") || r.Detect != "never" {
		t.Errorf("inactive row %+v", r)
	}
	if r := rows[2]; r.Inactive || !strings.HasPrefix(r.Evidence, "inactive (allowed): ") || r.Recover != "0.0 s" {
		t.Errorf("allowed row %+v (resolution from the step: 0.1 s)", r)
	}
}
