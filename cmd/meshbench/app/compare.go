package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/reports"
)

func runCompare(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("compare", stderr, "compare BASE.json NEW.json [--markdown FILE] [--strict-env] [--alpha A]")
	md := fs.String("markdown", "", "also write the comparison as markdown to FILE (for CI comments)")
	strict := fs.Bool("strict-env", false, "fail (exit status 3) when the two runs' machines or scenarios differ, instead of warning")
	alpha := fs.Float64("alpha", reports.DefaultAlpha, "significance level: of the Benjamini-Hochberg adjusted p-values and of the rank check")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		fs.Usage()
		return fmt.Errorf("%w: compare takes a base and a new results file", ErrUsage)
	}
	if *alpha <= 0 || *alpha >= 1 {
		return fmt.Errorf("%w: --alpha %g is not between 0 and 1", ErrUsage, *alpha)
	}
	base, err := results.ReadFile(pos[0])
	if err != nil {
		return err
	}
	cur, err := results.ReadFile(pos[1])
	if err != nil {
		return err
	}
	cmp, err := reports.Compare(base, cur, reports.CompareOptions{Alpha: *alpha})
	if err != nil {
		return err
	}
	if err := cmp.WriteText(stdout); err != nil {
		return err
	}
	if *md != "" {
		f, err := os.Create(*md)
		if err != nil {
			return err
		}
		werr := cmp.WriteMarkdown(f)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return fmt.Errorf("write %s: %w", *md, werr)
		}
	}
	var errs []error
	if cmp.EnvironmentsDiffer() {
		// Loud on stderr too, where CI logs put it next to the exit status.
		fmt.Fprintln(stderr, "meshbench: WARNING: the two runs were measured on different machines or scenarios: absolute figures were not gated (see the comparison)")
		if *strict {
			errs = append(errs, fmt.Errorf("%w (--strict-env)", ErrEnvironment))
		}
	}
	if cmp.Regressed() {
		errs = append(errs, ErrRegression)
	}
	return errors.Join(errs...)
}
