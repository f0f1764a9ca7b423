package results

import (
	"slices"
)

// Summarize groups steps by datapath, service and offered rate, in first-seen
// order, and aggregates each group over its repetitions.
func Summarize(steps []Step) []Summary {
	type key struct {
		dp, svc string
		rate    float64
	}
	var order []key
	groups := map[key][]Step{}
	for _, s := range steps {
		k := key{s.Datapath, s.Service, s.OfferedRPS}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], s)
	}
	out := make([]Summary, 0, len(order))
	for _, k := range order {
		g := groups[k]
		pick := func(f func(Step) float64) Spread {
			v := make([]float64, len(g))
			for i, s := range g {
				v[i] = f(s)
			}
			return NewSpread(v)
		}
		verified := true
		for _, s := range g {
			verified = verified && s.Proof.Verified
		}
		// Kernel-side figures of the repetitions that have them.
		stamped := func(f func(Step) float64) Spread {
			var v []float64
			for _, s := range g {
				if s.KernelLatencyUS != nil && s.ClientOverheadUS != nil {
					v = append(v, f(s))
				}
			}
			return NewSpread(v)
		}
		out = append(out, Summary{
			Datapath:          k.dp,
			Service:           k.svc,
			OfferedRPS:        k.rate,
			Repetitions:       len(g),
			AchievedRPS:       pick(func(s Step) float64 { return s.AchievedRPS }),
			SuccessRatio:      pick(func(s Step) float64 { return s.SuccessRatio }),
			P50US:             pick(func(s Step) float64 { return s.LatencyUS.P50 }),
			P90US:             pick(func(s Step) float64 { return s.LatencyUS.P90 }),
			P99US:             pick(func(s Step) float64 { return s.LatencyUS.P99 }),
			P999US:            pick(func(s Step) float64 { return s.LatencyUS.P999 }),
			MaxUS:             pick(func(s Step) float64 { return s.LatencyUS.Max }),
			SegmentsPerReq:    pick(func(s Step) float64 { return s.Cost.SegmentsPerRequest }),
			CtxSwitchesPerReq: pick(func(s Step) float64 { return s.Cost.ContextSwitchesPerReq }),
			CPUMicrosPerReq:   pick(func(s Step) float64 { return s.Cost.CPUMicrosPerRequest }),
			KernelP50US:       stamped(func(s Step) float64 { return s.KernelLatencyUS.P50 }),
			KernelP99US:       stamped(func(s Step) float64 { return s.KernelLatencyUS.P99 }),
			OverheadP50US:     stamped(func(s Step) float64 { return s.ClientOverheadUS.P50 }),
			OverheadP99US:     stamped(func(s Step) float64 { return s.ClientOverheadUS.P99 }),
			ProofVerified:     verified,
		})
	}
	return out
}

// NewSpread returns the median, minimum and maximum of values. The median of
// an even count is the mean of the two middle values.
func NewSpread(values []float64) Spread {
	sp := Spread{Values: slices.Clone(values)}
	if len(values) == 0 {
		return sp
	}
	s := slices.Clone(values)
	slices.Sort(s)
	sp.Min, sp.Max = s[0], s[len(s)-1]
	if n := len(s); n%2 == 1 {
		sp.Median = s[n/2]
	} else {
		sp.Median = (s[n/2-1] + s[n/2]) / 2
	}
	return sp
}
