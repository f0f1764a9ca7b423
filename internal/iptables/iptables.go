package iptables

import (
	"context"
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
