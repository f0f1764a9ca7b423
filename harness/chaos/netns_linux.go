package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
)

// checkTestbedNetns refuses the namespace at path when it is the root
// network namespace (that of pid 1) or this process's own: faults act only
// inside testbed namespaces.
func checkTestbedNetns(path string) error {
	if path == "" {
		return errors.New("no network namespace path")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fmt.Errorf("netns %s: %w", path, err)
	}
	for _, own := range []string{"/proc/self/ns/net", "/proc/1/ns/net"} {
		var o syscall.Stat_t
		if err := syscall.Stat(own, &o); err != nil {
			if own == "/proc/1/ns/net" {
				continue // hidden from this process (a container): its own namespace is the root one
			}
			return fmt.Errorf("stat %s: %w", own, err)
		}
		if o.Dev == st.Dev && o.Ino == st.Ino {
			return fmt.Errorf("netns %s is the root network namespace: faults act only inside testbed namespaces", path)
		}
	}
	return nil
}

// iptables runs iptables with args inside the network namespace at path.
func iptables(ctx context.Context, path string, args ...string) error {
	if err := checkTestbedNetns(path); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + path, "iptables", "-w", "5"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("iptables %s in %s: %w: %s", strings.Join(args, " "), path, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// rule is one iptables rule of the filter table in one namespace.
type rule struct {
	netns string
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
	if err := iptables(ctx, r.netns, append([]string{"-I", r.chain, "1"}, r.spec...)...); err != nil {
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
		if _, err := os.Stat(r.netns); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := iptables(ctx, r.netns, append([]string{"-D", r.chain}, r.spec...)...); err != nil {
			if iptables(ctx, r.netns, append([]string{"-C", r.chain}, r.spec...)...) != nil && ctx.Err() == nil {
				continue // not there any more
			}
			errs = append(errs, err)
			kept = append([]rule{r}, kept...)
		}
	}
	rs.applied = kept
	return errors.Join(errs...)
}

// comment tags a rule with the fault's name so that an operator can tell
// whose it is.
func comment(tag string) []string {
	return []string{"-m", "comment", "--comment", "meshbench-chaos:" + tag}
}
