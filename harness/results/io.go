package results

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/meshbench/meshbench/internal/atomicfile"
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
func WriteFile(path string, run *Run) error {
	return atomicfile.Write(path, 0o644, func(w io.Writer) error { return Encode(w, run) })
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
