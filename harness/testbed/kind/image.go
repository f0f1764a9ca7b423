package kind

import (
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

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
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	img, err := kubeenv.NewImage(binary, "meshbench", nil)
	if err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	if err := tarball.WriteToFile(out, tag, img); err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	return nil
}
