package kubeenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

var runDirRe = regexp.MustCompile(`^meshbench-kube-([0-9a-f]{1,8})-`)

// runDirs maps run ids to their run directories under os.TempDir() (the
// default location), with whether the process that owns each is alive.
func runDirs() (map[string]string, map[string]bool, error) {
	ents, err := os.ReadDir(os.TempDir())
	if err != nil {
		return nil, nil, fmt.Errorf("list run directories: %w", err)
	}
	dirs, alive := map[string]string{}, map[string]bool{}
	for _, e := range ents {
		m := runDirRe.FindStringSubmatch(e.Name())
		if m == nil || !e.IsDir() {
			continue
		}
		dir := filepath.Join(os.TempDir(), e.Name())
		dirs[m[1]] = dir
		alive[m[1]] = ownerAlive(dir)
	}
	return dirs, alive, nil
}

func ownerAlive(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return false
	}
	return syscall.Kill(pid, 0) == nil
}

// Down removes what an environment left on the host after its process died
// (a panic, SIGKILL): it kills the processes in the run's cgroups
// (containers and shims too, which the parent-death signal does not
// reach), removes the cgroups and the run's network namespaces, restores
// the sysctls the run saved, and removes its run directory. With runID ""
// it does this for every run in os.TempDir() whose owning process is gone.
// It returns what it removed.
func Down(ctx context.Context, runID string) ([]string, error) {
	dirs, alive, err := runDirs()
	if err != nil {
		return nil, err
	}
	var ids []string
	if runID != "" {
		if !runIDRe.MatchString(runID) {
			return nil, fmt.Errorf("down: run id %q: want 1 to 8 lower-case hex digits", runID)
		}
		ids = []string{runID}
	} else {
		for id := range dirs {
			if !alive[id] {
				ids = append(ids, id)
			}
		}
	}
	cg, err := detectCgroups()
	if err != nil {
		return nil, fmt.Errorf("down: %w", err)
	}
	var removed []string
	var errs []error
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		if dirs := cg.dirs(CgroupTop(id)); len(dirs) > 0 {
			if err := cg.destroy(CgroupTop(id), 15*time.Second); err != nil {
				errs = append(errs, err)
			}
			removed = append(removed, "cgroup "+CgroupTop(id))
		}
		// Only the kube environment's namespaces (…-k*): the embedded
		// testbed removes its own.
		matches, _ := filepath.Glob(filepath.Join(netnsDir, "mb-"+id+"-k*"))
		for _, p := range matches {
			if err := removeNetnsPath(p); err != nil {
				errs = append(errs, err)
			}
			removed = append(removed, "netns "+p)
		}
		if dir, ok := dirs[id]; ok {
			if s, err := loadSysctls(dir); err == nil {
				errs = append(errs, s.restore())
				removed = append(removed, "sysctls saved by run "+id)
			}
			if err := os.RemoveAll(dir); err != nil {
				errs = append(errs, fmt.Errorf("remove %s: %w", dir, err))
			}
			removed = append(removed, "directory "+dir)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("down: %w", err)
	}
	return removed, nil
}
