package kind

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/meshbench/meshbench/internal/atomicfile"
	"github.com/meshbench/meshbench/internal/kubeenv"
	"github.com/meshbench/meshbench/internal/staticbin"
)

// BuildImage writes to out the meshbench image named ref: the static
// binary at binary, as /meshbench, and nothing else (no base image, no C
// library). It is built in-process (go-containerregistry: no daemon, no
// registry) as a tar that `ctr image import`, `docker load` and `kind load
// image-archive` accept. The kind provider loads it into its nodes;
// `meshbench image` writes it for any cluster.
func BuildImage(ref, binary, out string) error {
	if binary == "" {
		return fmt.Errorf("image %s: no meshbench binary to pack", ref)
	}
	if err := staticbin.Check(binary); err != nil {
		return err
	}
	// The image holds the binary under its base name: copy it as
	// "meshbench", whatever it is called here.
	dir, err := os.MkdirTemp("", "meshbench-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	in, err := os.Open(binary)
	if err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	defer in.Close()
	dst := filepath.Join(dir, "meshbench")
	if err := atomicfile.Write(dst, 0o755, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	}); err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	return kubeenv.BuildImage(ref, dst, nil, out)
}
