package golden

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recorder is a testing.TB that records failures instead of stopping.
type recorder struct {
	testing.TB
	errors, fatals []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.fatals = append(r.fatals, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatal(args ...any) { r.fatals = append(r.fatals, fmt.Sprint(args...)) }

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.golden")
	if err := os.WriteFile(path, []byte("one\ntwo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name           string
		path           string
		got            string
		errors, fatals int
		mention        string
	}{
		{"same", path, "one\ntwo\n", 0, 0, ""},
		{"differs", path, "one\nthree\n", 1, 0, "line 2:\nwant: two\ngot:  three"},
		{"longer", path, "one\ntwo\nthree\n", 1, 0, "line 3:"},
		{"missing", filepath.Join(dir, "absent.golden"), "x", 0, 1, "-update"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{TB: t}
			Check(r, tc.path, []byte(tc.got))
			if len(r.errors) != tc.errors || len(r.fatals) != tc.fatals {
				t.Fatalf("errors %q, fatals %q; want %d and %d", r.errors, r.fatals, tc.errors, tc.fatals)
			}
			if all := strings.Join(append(r.errors, r.fatals...), "\n"); !strings.Contains(all, tc.mention) {
				t.Errorf("failure %q does not mention %q", all, tc.mention)
			}
		})
	}
}

func TestCheckUpdate(t *testing.T) {
	defer func(old bool) { *update = old }(*update)
	*update = true
	path := filepath.Join(t.TempDir(), "new", "b.golden")
	r := &recorder{TB: t}
	Check(r, path, []byte("fresh\n"))
	if len(r.errors)+len(r.fatals) > 0 {
		t.Fatalf("errors %q, fatals %q", r.errors, r.fatals)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "fresh\n" {
		t.Errorf("golden file = %q, %v; want %q", b, err, "fresh\n")
	}
}
