package staticbin

import (
	"debug/elf"
	"fmt"
)

// Check fails for a binary that is not a statically linked ELF program:
// the meshbench image holds only the binary, no C library or loader.
func Check(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("image: read %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("image: %s is dynamically linked, and the image has no C library: build meshbench with CGO_ENABLED=0", path)
		}
	}
	return nil
}
