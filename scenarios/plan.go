package scenarios

import (
	"encoding/json"
	"time"

	"github.com/meshbench/meshbench/datapaths/catalog"
)

// Overheads of a run beyond its load, used by EstimatedDuration. They were
// measured on a 2-core machine with the netns provider and are estimates
// for showing time left, not limits.
const (
	// StepOverhead is the time a step spends outside warmup and duration:
	// starting the load client, collecting its summary and the step's
	// metrics.
	StepOverhead = 1 * time.Second
	// CycleOverhead is the time each datapath × repetition cycle spends
	// building its cluster, installing the datapath, starting the echo
	// servers, proving the datapath and tearing everything down.
	CycleOverhead = 3 * time.Second
	// PodOverhead is each pod's share of a cycle: its namespaces, echo
	// server, readiness, counter reads and teardown (scenarios/scale.yaml's
	// 512-pod cycles spent about 15 s on them).
	PodOverhead = 30 * time.Millisecond
	// SidecarOverhead is each pod's sidecar's start and first ACK, for the
	// datapaths with a proxy in every pod (512 sidecars: about 40 s).
	SidecarOverhead = 80 * time.Millisecond
	// CalibrationMax bounds the calibration step's measured duration; its
	// warmup is at most CalibrationWarmupMax.
	CalibrationMax       = 5 * time.Second
	CalibrationWarmupMax = 1 * time.Second
)

// Step is one measured load step of a run.
type Step struct {
	Datapath   string
	Repetition int // 1-based
	Rate       int // offered requests per second
}

// Plan returns the run's measured steps in the order they run: for each
// datapath, each repetition on a fresh cluster, each rate.
func (s *Scenario) Plan() []Step {
	steps := make([]Step, 0, len(s.Datapaths)*s.Repetitions*len(s.Load.Rates))
	for _, dp := range s.Datapaths {
		for rep := 1; rep <= s.Repetitions; rep++ {
			for _, rate := range s.Load.Rates {
				steps = append(steps, Step{Datapath: dp, Repetition: rep, Rate: rate})
			}
		}
	}
	return steps
}

// EstimatedDuration estimates how long the whole run takes: for every step
// its warmup, duration and StepOverhead; CycleOverhead for every datapath ×
// repetition, with PodOverhead per pod (and SidecarOverhead per pod for a
// datapath with a sidecar in every pod); and the calibration step when
// Load.Calibrate is not false; to the second.
func (s *Scenario) EstimatedDuration() time.Duration {
	l := s.Load
	per := time.Duration(l.Warmup+l.Duration) + StepOverhead
	total := time.Duration(len(s.Plan()))*per + time.Duration(len(s.Datapaths)*s.Repetitions)*CycleOverhead
	pods := time.Duration(s.Topology.Nodes * s.Topology.PodsPerNode)
	for _, dp := range s.Datapaths {
		cycle := pods * PodOverhead
		if base, _ := catalog.Split(dp); base == catalog.Sidecar || base == catalog.Sockmap {
			cycle += pods * SidecarOverhead
		}
		total += time.Duration(s.Repetitions) * cycle
	}
	if l.Calibrate == nil || *l.Calibrate {
		total += min(time.Duration(l.Duration), CalibrationMax) + min(time.Duration(l.Warmup), CalibrationWarmupMax) + StepOverhead
	}
	return total.Round(time.Second)
}

// Resolved returns the scenario as JSON with every default filled in, for
// results.json: durations as strings ("10s"), sizes as integers of bytes.
// Parse accepts the output (JSON is YAML) and returns an equal Scenario.
func (s *Scenario) Resolved() ([]byte, error) {
	return json.Marshal(s)
}
