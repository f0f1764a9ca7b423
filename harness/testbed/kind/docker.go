package kind

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/harness/testbed/kube"
)

// Labels of the docker networks the provider creates; Down finds them by
// these (kube.ManagedByLabel=meshbench, ProviderLabel=kind, and
// kube.RunLabel=<run id>).
const (
	// ProviderLabel names the provider that created the network.
	ProviderLabel = "meshbench.io/provider"
	managedBy     = "meshbench"
	providerName  = "kind"
)

// docker runs the docker command line and returns its standard output; an
// error carries its standard error's first line.
func docker(ctx context.Context, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i]
		}
		what := args[:min(len(args), 2)]
		if len(what) == 2 && strings.HasPrefix(what[1], "-") {
			what = what[:1]
		}
		return stdout.String(), fmt.Errorf("docker %s: %w: %s", strings.Join(what, " "), err, msg)
	}
	return stdout.String(), nil
}

// checkDocker fails, wrapping testbed.ErrNotSupported, when no Docker
// engine answers.
func checkDocker(ctx context.Context) error {
	if _, err := exec.LookPath("docker"); err != nil {
		return fmt.Errorf("kind: the kind provider runs its nodes as Docker containers, and there is no docker command: %w", testbed.ErrNotSupported)
	}
	if _, err := docker(ctx, "info", "--format", "{{.ServerVersion}}"); err != nil {
		return fmt.Errorf("kind: the kind provider runs its nodes as privileged Docker containers, and no Docker engine answered (%v): %w", err, testbed.ErrNotSupported)
	}
	return nil
}

// networkCreateArgs returns the arguments of `docker network create` for
// the run's network: a bridge on subnet, IPv4 only, labelled for Down.
// mtu, when positive, is the default bridge's (as kind sets it on its own
// network, for hosts whose uplink has a smaller MTU).
func networkCreateArgs(name, runID string, subnet netip.Prefix, mtu int) []string {
	args := []string{"network", "create", "--driver", "bridge",
		"--subnet", subnet.String(), "--gateway", Gateway(subnet).String(), "--ipv6=false",
		"--label", kube.ManagedByLabel + "=" + managedBy,
		"--label", ProviderLabel + "=" + providerName,
		"--label", kube.RunLabel + "=" + runID,
	}
	if mtu > 0 {
		args = append(args, "-o", "com.docker.network.driver.mtu="+strconv.Itoa(mtu))
	}
	return append(args, name)
}

// pickSubnet returns the first NodeSubnet that overlaps none of used.
func pickSubnet(used []netip.Prefix) (netip.Prefix, error) {
	for i := range MaxNetworks {
		s := NodeSubnet(i)
		if !slices.ContainsFunc(used, s.Overlaps) {
			return s, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("kind: every node subnet %s to %s overlaps a docker network: remove clusters of dead runs with 'meshbench down --provider kind'",
		NodeSubnet(0), NodeSubnet(MaxNetworks-1))
}

// parseSubnets reads the subnets `docker network inspect --format
// '{{range .IPAM.Config}}{{.Subnet}} {{end}}'` printed, skipping what is
// not a prefix.
func parseSubnets(out string) []netip.Prefix {
	var used []netip.Prefix
	for _, f := range strings.Fields(out) {
		if p, err := netip.ParsePrefix(f); err == nil {
			used = append(used, p.Masked())
		}
	}
	return used
}

// usedSubnets lists the subnets of every docker network.
func usedSubnets(ctx context.Context) ([]netip.Prefix, error) {
	out, err := docker(ctx, "network", "ls", "--quiet", "--no-trunc")
	if err != nil {
		return nil, err
	}
	ids := strings.Fields(out)
	if len(ids) == 0 {
		return nil, nil
	}
	out, err = docker(ctx, append([]string{"network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}} {{end}}"}, ids...)...)
	if err != nil {
		return nil, err
	}
	return parseSubnets(out), nil
}

// defaultMTU returns the MTU of docker's default bridge network, 0 when
// it sets none.
func defaultMTU(ctx context.Context) int {
	out, err := docker(ctx, "network", "inspect", "bridge", "--format", `{{index .Options "com.docker.network.driver.mtu"}}`)
	if err != nil {
		return 0
	}
	mtu, _ := strconv.Atoi(strings.TrimSpace(out))
	return mtu
}

// createNetwork creates the run's docker network on the first free node
// subnet and returns the subnet. When another network takes that subnet
// between the listing and the creation, it tries the next.
func createNetwork(ctx context.Context, name, runID string) (netip.Prefix, error) {
	mtu := defaultMTU(ctx)
	var errs []error
	for range 3 {
		used, err := usedSubnets(ctx)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("kind: list docker networks: %w", err)
		}
		subnet, err := pickSubnet(used)
		if err != nil {
			return netip.Prefix{}, err
		}
		_, err = docker(ctx, networkCreateArgs(name, runID, subnet, mtu)...)
		if err == nil {
			return subnet, nil
		}
		errs = append(errs, err)
		if strings.Contains(err.Error(), "already exists") {
			break
		}
		if used, lerr := usedSubnets(ctx); lerr != nil || !slices.ContainsFunc(used, subnet.Overlaps) {
			break // not a race for the subnet
		}
	}
	return netip.Prefix{}, fmt.Errorf("kind: create docker network %s (a network of that name may be left from a dead run: 'meshbench down --provider kind --run %s'): %w", name, runID, errors.Join(errs...))
}

// network is a docker network of the provider's.
type network struct {
	Name, RunID string
}

// networkFormat is the --format of listNetworks: name, then the labels
// parseNetworks checks.
var networkFormat = strings.Join([]string{`{{.Name}}`,
	`{{.Label "` + kube.ManagedByLabel + `"}}`, `{{.Label "` + ProviderLabel + `"}}`, `{{.Label "` + kube.RunLabel + `"}}`}, "\t")

// parseNetworks reads what `docker network ls --format networkFormat`
// printed and keeps the provider's networks of runID's run (of every run
// when runID is ""): the label filters of the listing are checked again
// here, whatever docker made of them.
func parseNetworks(out, runID string) []network {
	var nets []network
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(strings.TrimSpace(line), "\t")
		if len(f) != 4 || f[0] == "" || f[1] != managedBy || f[2] != providerName || !runIDRe.MatchString(f[3]) {
			continue
		}
		if runID != "" && f[3] != runID {
			continue
		}
		nets = append(nets, network{Name: f[0], RunID: f[3]})
	}
	return nets
}

// listNetworks lists the provider's networks: runID's, or every run's
// when runID is "".
func listNetworks(ctx context.Context, runID string) ([]network, error) {
	args := []string{"network", "ls",
		"--filter", "label=" + kube.ManagedByLabel + "=" + managedBy,
		"--filter", "label=" + ProviderLabel + "=" + providerName}
	if runID != "" {
		args = append(args, "--filter", "label="+kube.RunLabel+"="+runID)
	}
	out, err := docker(ctx, append(args, "--format", networkFormat)...)
	if err != nil {
		return nil, fmt.Errorf("kind: list docker networks: %w", err)
	}
	return parseNetworks(out, runID), nil
}

// removeNetwork removes a docker network.
func removeNetwork(ctx context.Context, name string) error {
	if _, err := docker(ctx, "network", "rm", name); err != nil {
		return fmt.Errorf("kind: remove docker network %s: %w", name, err)
	}
	return nil
}
