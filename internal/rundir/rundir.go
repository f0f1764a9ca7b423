// Package rundir manages the per-run directory under /run/meshbench that
// holds files the pods of a run share: the control plane's socket and a copy
// of the meshbench binary that unprivileged proxies can execute.
package rundir

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"

	"github.com/meshbench/meshbench/internal/atomicfile"
)

// Root is where run directories live.
var Root = "/run/meshbench"

var idRe = regexp.MustCompile(`^[0-9a-f]{1,8}$`)

// Path returns the run's directory (not created).
func Path(runID string) string { return filepath.Join(Root, runID) }

// Ensure creates the run's directory, readable and searchable by every user
// (proxies run as uid 1337).
func Ensure(runID string) (string, error) {
	if !idRe.MatchString(runID) {
		return "", fmt.Errorf("run directory: invalid run id %q", runID)
	}
	dir := Path(runID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create run directory: %w", err)
	}
	// MkdirAll honours the umask; the directories must be searchable.
	for _, d := range []string{Root, dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			return "", fmt.Errorf("create run directory: %w", err)
		}
	}
	return dir, nil
}

// CopyExecutable copies the executable at src into the run's directory as
// name, mode 0755, and returns its path. Proxies that run as another user
// execute the copy, since the original may sit in a directory only root can
// search.
func CopyExecutable(runID, src, name string) (string, error) {
	dir, err := Ensure(runID)
	if err != nil {
		return "", err
	}
	dst := filepath.Join(dir, name)
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	in, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("copy executable: %w", err)
	}
	defer in.Close()
	if err := atomicfile.Write(dst, 0o755, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	}); err != nil {
		return "", fmt.Errorf("copy executable: %w", err)
	}
	return dst, nil
}

// Remove removes the run's directory ("" : every run's), returning what it
// removed.
func Remove(runID string) ([]string, error) {
	ids, err := List()
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, id := range ids {
		if runID != "" && id != runID {
			continue
		}
		if err := os.RemoveAll(Path(id)); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "directory "+Path(id))
	}
	// Leave no empty Root behind either (fails harmlessly if another run
	// still has a directory there).
	_ = os.Remove(Root)
	return removed, errors.Join(errs...)
}

// List returns the ids of the runs that have a directory.
func List() ([]string, error) {
	ents, err := os.ReadDir(Root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list run directories: %w", err)
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() && idRe.MatchString(e.Name()) {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}
