package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/internal/iptables"
	"github.com/meshbench/meshbench/internal/nsutil"
)

// rule is one iptables rule of the filter table in one namespace.
type rule struct {
	netns nsutil.Netns
	chain string
	spec  []string
}

// ruleSet inserts rules and removes exactly the ones it inserted.
type ruleSet struct {
	mu      sync.Mutex
	applied []rule
}

// add inserts r at the head of its chain, so that it acts before any rule
// a datapath installed.
func (rs *ruleSet) add(ctx context.Context, r rule) error {
	if err := iptables.Run(ctx, r.netns, append([]string{"-I", r.chain, "1"}, r.spec...)...); err != nil {
		return err
	}
	rs.mu.Lock()
	rs.applied = append(rs.applied, r)
	rs.mu.Unlock()
	return nil
}

// removeAll deletes every inserted rule, newest first. A rule whose
// namespace is gone, or that is already gone, counts as removed.
func (rs *ruleSet) removeAll(ctx context.Context) error {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	var errs []error
	var kept []rule
	for i := len(rs.applied) - 1; i >= 0; i-- {
		r := rs.applied[i]
		if _, err := os.Stat(r.netns.Path); r.netns.Host == nil && errors.Is(err, os.ErrNotExist) {
			continue
		}
		var err error
		for try := 0; try < 3; try++ {
			if err = iptables.Run(ctx, r.netns, append([]string{"-D", r.chain}, r.spec...)...); err == nil {
				break
			}
			if errors.Is(err, os.ErrNotExist) {
				err = nil // the namespace is gone (through an agent)
				break
			}
			if iptables.RuleAbsent(iptables.Run(ctx, r.netns, append([]string{"-C", r.chain}, r.spec...)...)) {
				err = nil // not there any more
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, err)
			kept = append([]rule{r}, kept...)
		}
	}
	rs.applied = kept
	return errors.Join(errs...)
}

// activity sums what the inserted rules have matched, from their
// counters (each rule's comment names its fault): what says whose rules
// they are, for the detail.
func (rs *ruleSet) activity(ctx context.Context, what string) (results.FaultActivity, error) {
	rs.mu.Lock()
	rules := slices.Clone(rs.applied)
	rs.mu.Unlock()
	type place struct{ netns, comment string }
	seen := map[place]bool{}
	var n int64
	for _, r := range rules {
		i := slices.Index(r.spec, "--comment")
		if i < 0 || i+1 >= len(r.spec) {
			continue
		}
		k := place{r.netns.Path, r.spec[i+1]}
		if seen[k] {
			continue
		}
		seen[k] = true
		p, _, _, err := iptables.Matched(ctx, r.netns, "filter", k.comment)
		if err != nil {
			return results.FaultActivity{}, fmt.Errorf("read rule counters: %w", err)
		}
		n += p
	}
	return dropActivity("rule_packets", n, what), nil
}

// comment tags a rule with the fault's name so that an operator can tell
// whose it is.
func comment(tag string) []string {
	return []string{"-m", "comment", "--comment", "meshbench-chaos:" + tag}
}
