package app

import (
	"context"
	"fmt"
	"io"

	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/reports"
)

func runGateCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("gate-check", stderr, "gate-check RESULTS.json [RESULTS.json ...] [flags]\n\n"+
		"Estimates the regression gate's false-alarm rate and power from repetitions of one\n"+
		"commit: splits them into two halves many times, runs 'compare' on each split, and\n"+
		"again with the new half's p99 scaled in one datapath at a time. Several runs of the\n"+
		"commit are pooled and also compared with each other.")
	splits := fs.Int("splits", 1000, "most splits to run (every ordered split when there are no more than this)")
	seed := fs.Uint64("seed", 1, "seed of the random splits")
	half := fs.Int("half", 0, "repetitions on each side (default: half of them)")
	factor := fs.Float64("factor", 1.3, "factor the power estimate multiplies the injected latency by")
	inject := fs.String("inject", reports.InjectP99, "what the power estimate scales: p99, or latency (every percentile)")
	alpha := fs.Float64("alpha", reports.DefaultAlpha, "the gate's significance level (0.1 is also shown)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		fs.Usage()
		return fmt.Errorf("%w: gate-check takes one or more results files of one commit", ErrUsage)
	}
	if *alpha <= 0 || *alpha >= 1 {
		return fmt.Errorf("%w: --alpha %g is not between 0 and 1", ErrUsage, *alpha)
	}
	var runs []*results.Run
	for _, p := range pos {
		r, err := results.ReadFile(p)
		if err != nil {
			return err
		}
		runs = append(runs, r)
	}
	g, err := reports.CheckGate(runs, reports.GateCheckOptions{
		Compare: reports.CompareOptions{Alpha: *alpha},
		Splits:  *splits, Seed: *seed, Half: *half, Factor: *factor, Inject: *inject,
	})
	if err != nil {
		return err
	}
	return g.WriteText(stdout)
}
