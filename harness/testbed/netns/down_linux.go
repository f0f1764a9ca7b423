package netns

import (
	"github.com/meshbench/meshbench/internal/rundir"

	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// run is what a run left on the host, found from names alone.
type run struct {
	netns  []string // bind mounts under RunDir
	cgroup []string // meshbench-<id> directories
}

// findRun lists runID's namespaces and top cgroups ("" for every run).
func findRun(roots cgroupRoots, runID string) (run, error) {
	var r run
	var errs []error
	ents, err := os.ReadDir(RunDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("list %s: %w", RunDir, err))
	}
	for _, e := range ents {
		name := e.Name()
		if (runID == "" && anyNetnsRe.MatchString(name)) || (runID != "" && strings.HasPrefix(name, netnsName(runID, ""))) {
			r.netns = append(r.netns, filepath.Join(RunDir, name))
		}
	}
	for _, root := range roots.list() {
		ents, err := os.ReadDir(root)
		if err != nil {
			errs = append(errs, fmt.Errorf("list cgroups in %s: %w", root, err))
			continue
		}
		for _, e := range ents {
			name := e.Name()
			if !e.IsDir() {
				continue
			}
			if (runID == "" && anyCgroupRe.MatchString(name)) || (runID != "" && name == cgroupTopName(runID)) {
				r.cgroup = append(r.cgroup, filepath.Join(root, name))
			}
		}
	}
	return r, errors.Join(errs...)
}

// Down removes what runs of runID ("" for every run) left on the host, found
// from names alone: it kills the processes in their cgroups and network
// namespaces and removes both. It reports each removed object.
func (p *Provider) Down(ctx context.Context, runID string) ([]string, error) {
	if runID != "" {
		if err := ValidateRunID(runID); err != nil {
			return nil, fmt.Errorf("down: %w", err)
		}
	}
	roots, err := p.roots()
	if err != nil {
		return nil, fmt.Errorf("down: %w", err)
	}
	r, ferr := findRun(roots, runID)
	var removed []string
	errs := []error{ferr}
	for _, top := range r.cgroup {
		rm, err := removeCgroupTree(ctx, top)
		removed = append(removed, rm...)
		errs = append(errs, err)
	}
	killed, err := killNetnsProcs(r.netns)
	for _, k := range killed {
		removed = append(removed, k.String())
	}
	errs = append(errs, err)
	for _, path := range r.netns {
		if err := deleteNS(path); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "netns "+path)
	}
	dirs, err := rundir.Remove(runID)
	removed = append(removed, dirs...)
	errs = append(errs, err)
	for _, rm := range removed {
		p.log.Debug("removed", "object", rm)
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("down: %w", err)
	}
	return removed, nil
}

// Leftovers lists the objects of runID ("" for every run) still on the host:
// network namespaces, cgroups, the processes in either, and interfaces in
// this (the root) namespace whose names carry the run id, of which there
// should never be any. It uses the host's cgroup mounts.
func Leftovers(runID string) ([]string, error) {
	return New(Options{}).Leftovers(runID)
}

// Leftovers is like the package function Leftovers, with p's cgroup roots.
func (p *Provider) Leftovers(runID string) ([]string, error) {
	if runID != "" {
		if err := ValidateRunID(runID); err != nil {
			return nil, fmt.Errorf("leftovers: %w", err)
		}
	}
	roots, err := p.roots()
	if err != nil {
		return nil, fmt.Errorf("leftovers: %w", err)
	}
	r, ferr := findRun(roots, runID)
	errs := []error{ferr}
	var out []string
	for _, path := range r.netns {
		out = append(out, "netns "+path)
	}
	procs, err := procsInNetns(r.netns)
	errs = append(errs, err)
	for _, p := range procs {
		out = append(out, p.String())
	}
	for _, top := range r.cgroup {
		dirs, err := cgroupDirs(top)
		errs = append(errs, err)
		for _, d := range dirs {
			out = append(out, "cgroup "+d)
			pids, _ := cgroupPIDs(d)
			for _, pid := range pids {
				out = append(out, fmt.Sprintf("process %d in cgroup %s", pid, d))
			}
		}
	}
	ids, err := rundir.List()
	errs = append(errs, err)
	for _, id := range ids {
		if runID == "" || id == runID {
			out = append(out, "directory "+rundir.Path(id))
		}
	}
	ifs, err := net.Interfaces()
	if err != nil {
		errs = append(errs, fmt.Errorf("list interfaces: %w", err))
	}
	for _, ifc := range ifs {
		if (runID == "" && anyLinkRe.MatchString(ifc.Name)) || (runID != "" && isRunLink(ifc.Name, runID)) {
			out = append(out, "interface "+ifc.Name+" in the root netns")
		}
	}
	if err := errors.Join(errs...); err != nil {
		return out, fmt.Errorf("leftovers: %w", err)
	}
	return out, nil
}

// isRunLink reports whether an interface name is runID's: "mb", the id and a
// letter that is not a hex digit.
func isRunLink(name, runID string) bool {
	rest, ok := strings.CutPrefix(name, "mb"+runID)
	return ok && rest != "" && rest[0] >= 'g' && rest[0] <= 'z'
}
