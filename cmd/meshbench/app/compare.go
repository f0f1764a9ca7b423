package app

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/reports"
)

func runCompare(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("compare", stderr, "compare BASE.json NEW.json [--markdown FILE]")
	md := fs.String("markdown", "", "also write the comparison as markdown to FILE (for CI comments)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		fs.Usage()
		return fmt.Errorf("%w: compare takes a base and a new results file", ErrUsage)
	}
	base, err := results.ReadFile(pos[0])
	if err != nil {
		return err
	}
	cur, err := results.ReadFile(pos[1])
	if err != nil {
		return err
	}
	cmp, err := reports.Compare(base, cur, reports.CompareOptions{})
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
	if cmp.Regressed() {
		return ErrRegression
	}
	return nil
}
