package iptables

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/meshbench/meshbench/internal/nsutil"
)

// wait is how long a command waits for the xtables lock (-w).
const wait = "5"

// mu serialises this process's commands: iptables-nft commands racing on
// one namespace's table can fail even with -w.
var mu sync.Mutex

// run runs name (an iptables tool) with args inside ns, feeding it stdin,
// and returns its standard output. The error carries the command and its
// standard error.
func run(ctx context.Context, ns nsutil.Netns, stdin, name string, args ...string) (string, error) {
	mu.Lock()
	defer mu.Unlock()
	return ns.Exec(ctx, append([]string{name}, args...), stdin)
}

// Run runs iptables with args (waiting for the xtables lock) inside ns.
func Run(ctx context.Context, ns nsutil.Netns, args ...string) error {
	_, err := run(ctx, ns, "", "iptables", append([]string{"-w", wait}, args...)...)
	return err
}

// Restore feeds rules, in iptables-save form, to iptables-restore
// --noflush inside ns: the rules are added to (or, with -D lines, removed
// from) what is there.
func Restore(ctx context.Context, ns nsutil.Netns, rules string) error {
	_, err := run(ctx, ns, rules, "iptables-restore", "-w", wait, "--noflush")
	return err
}

// Save returns iptables-save of table inside ns.
func Save(ctx context.Context, ns nsutil.Netns, table string) (string, error) {
	return run(ctx, ns, "", "iptables-save", "-t", table)
}

// RuleAbsent reports whether err, from `iptables -C`, says the rule does
// not exist (exit status 1) rather than that the check failed.
func RuleAbsent(err error) bool {
	code, ok := nsutil.ExitCode(err)
	return ok && code == 1
}

// Matched returns the packets and bytes the rules of table whose comment
// is exactly comment (-m comment --comment) have matched inside ns, and
// how many such rules there are.
func Matched(ctx context.Context, ns nsutil.Netns, table, comment string) (packets, bytes int64, rules int, err error) {
	out, err := run(ctx, ns, "", "iptables-save", "-c", "-t", table)
	if err != nil {
		return 0, 0, 0, err
	}
	return matched(out, comment)
}

// matched sums the [packets:bytes] counters of the iptables-save -c lines
// whose comment is comment.
func matched(save, comment string) (packets, bytes int64, rules int, err error) {
	for line := range strings.Lines(save) {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasPrefix(f[0], "[") {
			continue
		}
		i := slices.Index(f, "--comment")
		if i < 0 || i+1 >= len(f) || strings.Trim(f[i+1], `"`) != comment {
			continue
		}
		var p, b int64
		if _, err := fmt.Sscanf(f[0], "[%d:%d]", &p, &b); err != nil {
			return 0, 0, 0, fmt.Errorf("iptables-save counters %q: %w", f[0], err)
		}
		packets, bytes, rules = packets+p, bytes+b, rules+1
	}
	return packets, bytes, rules, nil
}

// NodeComment is the comment of the rules a run adds to a node's own
// namespace (not a pod's, which goes with its pod): the node's agent
// removes the rules of its run when it stops (RemoveTagged), whatever
// became of the harness.
func NodeComment(runID string) string { return "meshbench-node-" + runID }

// RemoveTagged deletes the rules of the nat, filter and mangle tables in
// ns whose comment is exactly comment, and returns how many it deleted.
func RemoveTagged(ctx context.Context, ns nsutil.Netns, comment string) (int, error) {
	n := 0
	var errs []error
	for _, table := range []string{"nat", "filter", "mangle"} {
		save, err := Save(ctx, ns, table)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		del := tagged(save, comment)
		if len(del) == 0 {
			continue
		}
		rules := "*" + table + "\n" + strings.Join(del, "\n") + "\nCOMMIT\n"
		if err := Restore(ctx, ns, rules); err != nil {
			errs = append(errs, err)
			continue
		}
		n += len(del)
	}
	return n, errors.Join(errs...)
}

// tagged returns, as -D lines for iptables-restore, the -A lines of an
// iptables-save output whose comment is comment.
func tagged(save, comment string) []string {
	var out []string
	for line := range strings.Lines(save) {
		line = strings.TrimSpace(line)
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "-A" {
			continue
		}
		i := slices.Index(f, "--comment")
		if i < 0 || i+1 >= len(f) || strings.Trim(f[i+1], `"`) != comment {
			continue
		}
		out = append(out, "-D"+strings.TrimPrefix(line, "-A"))
	}
	return out
}
