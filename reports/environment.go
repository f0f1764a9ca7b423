package reports

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/meshbench/meshbench/harness/results"
)

// DefaultNoiseTolerance is how far, as a fraction, a noise fingerprint's
// p50 figures (the timer wake-up lateness and the calibration latency) may
// move between two runs before Compare calls the machines' noise
// different. The p99 figures are shown but not decisive: on a VM they jump
// by 2× between runs of the same machine.
const DefaultNoiseTolerance = 0.2

// memoryTolerance is how far the recorded memory may differ and still
// count as the same machine (the kernel's MemTotal moves by a few MiB
// between boots and kernel versions).
const memoryTolerance = 0.02

// EnvDifference is one field of the environment that differs between two
// runs.
type EnvDifference struct {
	Field     string
	Base, New string
}

// NoiseVerdict says how the new run's machine compared with the base's
// in noise.
type NoiseVerdict string

// Noise verdicts.
const (
	NoiseUnknown NoiseVerdict = "unknown" // a run has no fingerprint
	NoiseSimilar NoiseVerdict = "similar"
	NoiseNoisier NoiseVerdict = "noisier"
	NoiseQuieter NoiseVerdict = "quieter"
	NoiseMixed   NoiseVerdict = "mixed" // some figures up, some down
)

// NoiseFigure is one figure of the noise fingerprint in both runs, in
// microseconds.
type NoiseFigure struct {
	// Group names what was measured ("timer wake-up lateness after 100 µs
	// sleeps", "calibration latency") and Stat which percentile ("p50").
	Group, Stat string
	Base, New   float64
	// Decisive figures decide the verdict; the others are shown.
	Decisive bool
}

// Ratio is New / Base (NaN when Base is 0).
func (f NoiseFigure) Ratio() float64 {
	if f.Base == 0 {
		return math.NaN()
	}
	return f.New / f.Base
}

// EnvComparison is what Compare found about the two runs' environments.
type EnvComparison struct {
	// Differences lists the fields of the machine and the scenario that
	// differ. The meshbench commit and version are expected to differ and
	// are not compared.
	Differences []EnvDifference
	// Noise is the verdict of the noise fingerprints and Figures their
	// figures; Tolerance the fraction the decisive ones may move.
	Noise     NoiseVerdict
	Figures   []NoiseFigure
	Tolerance float64
}

// Match reports whether absolute figures of the two runs are comparable:
// the same machine and scenario, and noise fingerprints within tolerance.
// A run without a fingerprint cannot show that its machine was as quiet:
// two runs recorded as the same machine have differed by 30-86% on every
// latency, so such a comparison does not gate absolute figures.
func (e EnvComparison) Match() bool {
	return len(e.Differences) == 0 && e.Noise == NoiseSimilar
}

// compareEnvironments compares what two runs recorded about their machine,
// scenario and noise.
func compareEnvironments(base, new *results.Run, tol float64) EnvComparison {
	b, n := base.Environment, new.Environment
	e := EnvComparison{Tolerance: tol}
	add := func(field, bv, nv string) {
		if bv != nv {
			e.Differences = append(e.Differences, EnvDifference{field, orUnknown(bv), orUnknown(nv)})
		}
	}
	add("hostname", b.Hostname, n.Hostname)
	add("kernel", b.Kernel, n.Kernel)
	add("os", b.OS, n.OS)
	add("arch", b.Arch, n.Arch)
	add("CPU model", b.CPUModel, n.CPUModel)
	add("cores", strconv.Itoa(b.Cores), strconv.Itoa(n.Cores))
	if bm, nm := float64(b.MemoryMiB), float64(n.MemoryMiB); bm != nm && (bm == 0 || math.Abs(nm-bm)/bm > memoryTolerance) {
		add("memory", fmt.Sprintf("%d MiB", b.MemoryMiB), fmt.Sprintf("%d MiB", n.MemoryMiB))
	}
	add("Go version", b.GoVersion, n.GoVersion)
	add("provider", b.Provider, n.Provider)
	if !sameJSON(base.Scenario.Resolved, new.Scenario.Resolved) {
		add("scenario", orUnknown(scenarioName(base)), orUnknown(scenarioName(new))+" (resolved differently)")
	}
	e.Noise, e.Figures = compareNoise(noiseOf(base), noiseOf(new), tol)
	return e
}

// noiseOf returns a run's noise fingerprint; for files written before it
// was recorded, the calibration step's latency, when there is one.
func noiseOf(r *results.Run) *results.Noise {
	if n := r.Environment.Noise; n != nil {
		return n
	}
	if c := r.Calibration; c != nil && c.LatencyUS.P50 > 0 {
		return &results.Noise{CalibrationP50US: c.LatencyUS.P50, CalibrationP99US: c.LatencyUS.P99}
	}
	return nil
}

// compareNoise compares two noise fingerprints: noisier when a decisive
// figure grew beyond 1+tol, quieter when one shrank below 1/(1+tol),
// mixed when both happened.
func compareNoise(b, n *results.Noise, tol float64) (NoiseVerdict, []NoiseFigure) {
	if b == nil || n == nil {
		return NoiseUnknown, nil
	}
	var figs []NoiseFigure
	for _, bt := range b.Timer {
		for _, nt := range n.Timer {
			if bt.SleepUS != nt.SleepUS || bt.Samples == 0 || nt.Samples == 0 {
				continue
			}
			g := fmt.Sprintf("timer wake-up lateness after %s µs sleeps", fmtNum(bt.SleepUS))
			figs = append(figs,
				NoiseFigure{Group: g, Stat: "p50", Base: bt.OvershootP50US, New: nt.OvershootP50US, Decisive: true},
				NoiseFigure{Group: g, Stat: "p99", Base: bt.OvershootP99US, New: nt.OvershootP99US})
		}
	}
	if b.CalibrationP50US > 0 && n.CalibrationP50US > 0 {
		const g = "calibration latency"
		figs = append(figs,
			NoiseFigure{Group: g, Stat: "p50", Base: b.CalibrationP50US, New: n.CalibrationP50US, Decisive: true},
			NoiseFigure{Group: g, Stat: "p99", Base: b.CalibrationP99US, New: n.CalibrationP99US})
	}
	var up, down, decisive bool
	for _, f := range figs {
		r := f.Ratio()
		if !f.Decisive || math.IsNaN(r) {
			continue
		}
		decisive = true
		up = up || r > 1+tol
		down = down || r < 1/(1+tol)
	}
	switch {
	case !decisive:
		return NoiseUnknown, figs
	case up && down:
		return NoiseMixed, figs
	case up:
		return NoiseNoisier, figs
	case down:
		return NoiseQuieter, figs
	}
	return NoiseSimilar, figs
}

// sameJSON reports whether two JSON documents are equal once compacted
// (both empty counts as equal).
func sameJSON(a, b json.RawMessage) bool {
	var ca, cb bytes.Buffer
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return bytes.Equal(a, b)
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}

// describeEnv is a one-line description of a run's machine.
func describeEnv(e results.Environment) string {
	var parts []string
	if e.Kernel != "" {
		parts = append(parts, e.OS+" "+e.Kernel)
	}
	if e.CPUModel != "" || e.Cores > 0 {
		parts = append(parts, fmt.Sprintf("%s × %d cores", orUnknown(e.CPUModel), e.Cores))
	}
	if e.MemoryMiB > 0 {
		parts = append(parts, fmt.Sprintf("%d MiB", e.MemoryMiB))
	}
	if e.GoVersion != "" {
		parts = append(parts, e.GoVersion)
	}
	if len(parts) == 0 && e.Hostname == "" {
		return ""
	}
	return fmt.Sprintf("on %s: %s", orUnknown(e.Hostname), strings.Join(parts, ", "))
}

// envLines are the sentences a comparison prints about the environments:
// a loud warning when they differ, and what the noise fingerprints say.
func (c *Comparison) envLines() []string {
	e := c.Env
	var out []string
	if len(e.Differences) > 0 {
		var d []string
		for _, x := range e.Differences {
			d = append(d, fmt.Sprintf("%s %s → %s", x.Field, x.Base, x.New))
		}
		out = append(out, "WARNING: THE ENVIRONMENTS DIFFER: "+strings.Join(d, "; ")+".")
	}
	switch e.Noise {
	case NoiseUnknown:
		out = append(out, "noise: a run has no noise fingerprint: whether the machine was quieter or noisier cannot be told.")
	default:
		var f []string
		for i, x := range e.Figures {
			fig := fmt.Sprintf("%s %s → %s µs", x.Stat, fmtNum(x.Base), fmtNum(x.New))
			if i == 0 || e.Figures[i-1].Group != x.Group {
				f = append(f, x.Group+" "+fig)
			} else {
				f[len(f)-1] += ", " + fig
			}
		}
		verdict := map[NoiseVerdict]string{
			NoiseSimilar: fmt.Sprintf("the machines were about as noisy (p50 figures within %g%%)", e.Tolerance*100),
			NoiseNoisier: "WARNING: the new run's machine was NOISIER: slower absolute figures may be the machine, not meshbench",
			NoiseQuieter: "WARNING: the new run's machine was QUIETER: faster absolute figures may be the machine, not meshbench",
			NoiseMixed:   "WARNING: the noise fingerprints moved in both directions",
		}[e.Noise]
		out = append(out, "noise (base → new): "+strings.Join(f, "; ")+": "+verdict+".")
	}
	why := ""
	switch {
	case c.AbsoluteGated:
		out = append(out, "Absolute figures are gated: the environments match.")
	case len(e.Differences) > 0:
		why = "the environments differ"
	case e.Noise == NoiseUnknown:
		why = "a run has no noise fingerprint to show its machine was as quiet"
	default:
		why = "the machines' noise differs"
	}
	if why != "" {
		out = append(out, "Absolute figures are shown for information only: "+why+". The gate holds the within-run ratios to "+baselineDatapath+" and the success ratio, which travel between machines.")
	}
	for _, r := range []struct {
		which string
		run   results.Environment
		order string
	}{{"base", c.BaseEnv, c.baseOrder}, {"new", c.NewEnv, c.newOrder}} {
		if r.order != results.OrderInterleaved {
			out = append(out, fmt.Sprintf("note: the %s run measured each datapath's repetitions back to back (not interleaved): drift of the machine during the run landed on whichever datapath was running, and its ratios to %s carry it.", r.which, baselineDatapath))
		}
	}
	return out
}
