package results

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ErrSchema is returned when a file's schema is not Schema.
var ErrSchema = errors.New("unsupported results schema")

// Encode writes run to w as indented JSON.
func Encode(w io.Writer, run *Run) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(run)
}

// Decode reads a run from r and checks its schema.
func Decode(r io.Reader) (*Run, error) {
	var run Run
	dec := json.NewDecoder(r)
	if err := dec.Decode(&run); err != nil {
		return nil, fmt.Errorf("decode results: %w", err)
	}
	if run.Schema != Schema {
		return nil, fmt.Errorf("%w %q (want %q)", ErrSchema, run.Schema, Schema)
	}
	return &run, nil
}

// WriteFile writes run to path atomically: readers see the old file or the
// new one, never a partial one.
func WriteFile(path string, run *Run) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".results-*.json")
	if err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := Encode(f, run); err != nil {
		return fmt.Errorf("write results %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write results %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write results %s: %w", path, err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return fmt.Errorf("write results %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write results %s: %w", path, err)
	}
	return nil
}

// ReadFile reads and checks a results file.
func ReadFile(path string) (*Run, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	run, err := Decode(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return run, nil
}
