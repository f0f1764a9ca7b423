package kubeenv

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// PauseImage is the sandbox image every node uses: a static Go program
// that sleeps until SIGTERM (see EnsureBinaries), imported into each node.
const PauseImage = "meshbench.local/pause:v1"

const goarch = runtime.GOARCH

// BuildImage writes to tarPath an image named ref (e.g.
// "meshbench.local/echo:v1") whose only file is the static binary at
// binPath, stored as /<its base name> and run as the entrypoint with args.
// No registry or daemon is involved: import the tarball into a node with
// Node.ImportImage and run it with imagePullPolicy: Never. The binary must
// be statically linked (CGO_ENABLED=0): the image has no libc.
func BuildImage(ref, binPath string, args []string, tarPath string) error {
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("build image %s: %w", ref, err)
	}
	img, err := NewImage(binPath, "", args)
	if err != nil {
		return fmt.Errorf("build image %s: %w", ref, err)
	}
	if err := tarball.WriteToFile(tarPath, tag, img); err != nil {
		return fmt.Errorf("build image %s: %w", ref, err)
	}
	return nil
}

// NewImage returns an image whose only file is the static binary at
// binPath, stored as /<file> (file "": its base name) and run as the
// entrypoint with args, for this machine's architecture.
func NewImage(binPath, file string, args []string) (v1.Image, error) {
	bin, err := os.ReadFile(binPath)
	if err != nil {
		return nil, err
	}
	if file == "" {
		file = filepath.Base(binPath)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: file, Mode: 0o755, Size: int64(len(bin)), Typeflag: tar.TypeReg}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: layer})
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS = "linux"
	cfg.Architecture = goarch
	cfg.Config = v1.Config{Entrypoint: append([]string{"/" + file}, args...), WorkingDir: "/"}
	return mutate.ConfigFile(img, cfg)
}
