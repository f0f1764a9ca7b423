package reports

import (
	"encoding/json"
	"errors"

	"github.com/meshbench/meshbench/harness/results"
)

// resolved is the part of a run's resolved scenario (ScenarioCopy.Resolved)
// that reports use. It is decoded leniently: reports read only the results
// file, and a field that is missing or has changed shape is left zero.
type resolved struct {
	Name      string   `json:"name"`
	Datapaths []string `json:"datapaths"`
	Topology  struct {
		Nodes       int `json:"nodes"`
		PodsPerNode int `json:"pods_per_node"`
	} `json:"topology"`
	Load struct {
		Service     string    `json:"service"`
		Rates       []float64 `json:"rates"`
		Connections int       `json:"connections"`
	} `json:"load"`
	Repetitions int `json:"repetitions"`
}

// resolvedScenario decodes run.Scenario.Resolved; false when it is absent
// or not an object.
func resolvedScenario(run *results.Run) (resolved, bool) {
	var r resolved
	if len(run.Scenario.Resolved) == 0 {
		return r, false
	}
	if err := json.Unmarshal(run.Scenario.Resolved, &r); err != nil {
		// A field of another type is skipped and the rest decoded.
		var typeErr *json.UnmarshalTypeError
		if !errors.As(err, &typeErr) {
			return resolved{}, false
		}
	}
	return r, true
}
