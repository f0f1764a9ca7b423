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
	"time"
)

// rootNetns identifies the namespace this process started in, read at
// init while no thread has switched namespaces; the root namespace of pid
// 1 is checked too when this process may see it.
var rootNetns = func() (ids [][2]uint64) {
	for _, own := range []string{"/proc/self/ns/net", "/proc/1/ns/net"} {
		var st syscall.Stat_t
		if syscall.Stat(own, &st) == nil {
			ids = append(ids, [2]uint64{st.Dev, st.Ino})
		}
	}
	return ids
}()

// checkTestbedNetns refuses the namespace at path when it is the root
// network namespace: faults act only inside testbed namespaces.
func checkTestbedNetns(path string) error {
	if path == "" {
		return errors.New("no network namespace path")
	}
	if len(rootNetns) == 0 {
		return errors.New("cannot identify the root network namespace: refusing to inject faults")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fmt.Errorf("netns %s: %w", path, err)
	}
	for _, id := range rootNetns {
		if id == [2]uint64{st.Dev, st.Ino} {
			return fmt.Errorf("netns %s is the root network namespace: faults act only inside testbed namespaces", path)
		}
	}
	return nil
}

// iptablesMu serialises this process's iptables commands: iptables-nft
// commands racing on one namespace's table can fail.
var iptablesMu sync.Mutex

// iptables runs iptables with args inside the network namespace at path.
func iptables(ctx context.Context, path string, args ...string) error {
	if err := checkTestbedNetns(path); err != nil {
		return err
	}
	iptablesMu.Lock()
	defer iptablesMu.Unlock()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + path, "iptables", "-w", "5"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("iptables %s in %s: %w: %s", strings.Join(args, " "), path, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// ruleAbsent reports whether err, from iptables -C, says the rule does not
// exist (exit status 1) rather than that the check failed.
func ruleAbsent(err error) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee) && ee.ExitCode() == 1
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
		var err error
		for try := 0; try < 3; try++ {
			if err = iptables(ctx, r.netns, append([]string{"-D", r.chain}, r.spec...)...); err == nil {
				break
			}
			if ruleAbsent(iptables(ctx, r.netns, append([]string{"-C", r.chain}, r.spec...)...)) {
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

// comment tags a rule with the fault's name so that an operator can tell
// whose it is.
func comment(tag string) []string {
	return []string{"-m", "comment", "--comment", "meshbench-chaos:" + tag}
}
