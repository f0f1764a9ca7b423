package nsutil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
)

// Host reaches into the network namespaces of one machine: this one
// (Local), or a node that a node agent serves. Datapaths, faults and
// metrics reach pods and nodes only through a Netns, so the same code runs
// on the embedded testbed and, through agents, on Kubernetes nodes.
type Host interface {
	// Dial connects to addr (a literal IP and port) from inside the
	// network namespace at netns.
	Dial(ctx context.Context, netns, network, addr string) (net.Conn, error)
	// Exec runs argv, one of the network tools (iptables, iptables-save,
	// iptables-restore, tc, ip), inside the network namespace at netns,
	// feeding it stdin, and returns its standard output. A tool that
	// exits non-zero returns an *ExitError.
	Exec(ctx context.Context, netns string, argv []string, stdin string) (string, error)
}

// Netns is a network namespace and the host it is on.
type Netns struct {
	// Path is the namespace's path on its host.
	Path string
	// Host reaches it; nil means Local.
	Host Host
}

// Local is the machine this process runs on.
var Local Host = local{}

func (n Netns) host() Host {
	if n.Host == nil {
		return Local
	}
	return n.Host
}

// String returns the namespace's path.
func (n Netns) String() string { return n.Path }

// Dial connects to addr from inside the namespace.
func (n Netns) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return n.host().Dial(ctx, n.Path, network, addr)
}

// DialContext returns a function, for an http.Transport, whose connections
// are opened from inside the namespace.
func (n Netns) DialContext() func(ctx context.Context, network, addr string) (net.Conn, error) {
	return n.Dial
}

// Exec runs a network tool inside the namespace (see Host.Exec).
func (n Netns) Exec(ctx context.Context, argv []string, stdin string) (string, error) {
	if len(argv) == 0 {
		return "", errors.New("exec: no command")
	}
	return n.host().Exec(ctx, n.Path, argv, stdin)
}

// ExitError is a tool that ran and exited with a non-zero status.
type ExitError struct {
	Argv   []string
	Netns  string
	Code   int
	Stderr string
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("%s in %s: exit status %d: %s", strings.Join(e.Argv, " "), e.Netns, e.Code, strings.TrimSpace(e.Stderr))
}

// ExitCode returns the exit status of the tool err reports, and false
// when err is not an ExitError.
func ExitCode(err error) (int, bool) {
	var e *ExitError
	if errors.As(err, &e) {
		return e.Code, true
	}
	return 0, false
}

type local struct{}

func (local) Dial(ctx context.Context, netns, network, addr string) (net.Conn, error) {
	return Dial(ctx, netns, network, addr)
}

// Exec runs the tool under nsenter, refusing the host's root namespace:
// the harness changes only the testbed's own namespaces.
func (local) Exec(ctx context.Context, netns string, argv []string, stdin string) (string, error) {
	if err := RefuseRoot(netns); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + netns}, argv...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ctx.Err() == nil {
			return "", &ExitError{Argv: argv, Netns: netns, Code: ee.ExitCode(), Stderr: errb.String()}
		}
		return "", fmt.Errorf("%s in %s: %w: %s", strings.Join(argv, " "), netns, err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}
