package kubeenv

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// kubeletSysctls are the host-wide (not namespaced) sysctls kubelet sets
// at start (its setupKernelTunables). The first node saves them, Stop
// restores them; the saved values are also written to the run directory
// so that Down can restore them after a crash.
var kubeletSysctls = []string{
	"vm/overcommit_memory",
	"vm/panic_on_oom",
	"kernel/panic",
	"kernel/panic_on_oops",
	"kernel/keys/root_maxkeys",
	"kernel/keys/root_maxbytes",
}

const sysctlsFile = "sysctls.json"

type savedSysctls struct {
	values map[string]string
}

func readSysctls() (map[string]string, error) {
	m := map[string]string{}
	for _, k := range kubeletSysctls {
		b, err := os.ReadFile(filepath.Join("/proc/sys", k))
		if err != nil {
			return nil, fmt.Errorf("read sysctl %s: %w", k, err)
		}
		m[k] = strings.TrimSpace(string(b))
	}
	return m, nil
}

// saveSysctls records kubelet's sysctls, once per environment.
func (cp *ControlPlane) saveSysctls() error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.sysctls != nil {
		return nil
	}
	m, err := readSysctls()
	if err != nil {
		return err
	}
	// Another live environment's kubelet may have changed them already:
	// the host's values are the ones it saved.
	if other := otherLiveSysctls(cp.opts.RunID); other != nil {
		m = other.values
	}
	b, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(cp.dir, sysctlsFile), b, 0o644); err != nil {
		return fmt.Errorf("save sysctls: %w", err)
	}
	cp.sysctls = &savedSysctls{values: m}
	return nil
}

func (s *savedSysctls) restore() error {
	var errs []error
	for k, v := range s.values {
		if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0); err != nil {
			errs = append(errs, fmt.Errorf("restore sysctl %s: %w", k, err))
		}
	}
	return errors.Join(errs...)
}

// loadSysctls reads the values a run saved in its directory.
func loadSysctls(dir string) (*savedSysctls, error) {
	b, err := os.ReadFile(filepath.Join(dir, sysctlsFile))
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("read %s: %w", sysctlsFile, err)
	}
	return &savedSysctls{values: m}, nil
}

// otherLiveSysctls returns the sysctls saved by another environment whose
// process still runs, or nil.
func otherLiveSysctls(runID string) *savedSysctls {
	dirs, alive, err := runDirs()
	if err != nil {
		return nil
	}
	for id, dir := range dirs {
		if id == runID || !alive[id] {
			continue
		}
		if s, err := loadSysctls(dir); err == nil {
			return s
		}
	}
	return nil
}
