package kubeapp

import (
	"context"
	"fmt"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/meshbench/meshbench/internal/kubeenv"
)

// pushTimeout bounds the push of the image (one layer, the static binary).
const pushTimeout = 5 * time.Minute

// pushImage builds the meshbench image of the static binary bin (stored
// as /meshbench) and pushes it to repo as repo/meshbench:<digest prefix>,
// with the credentials of the Docker config (as `docker login` left them,
// else anonymous). It returns the reference by digest the pods run, so
// that they run exactly this binary.
func pushImage(ctx context.Context, bin, repo string) (string, error) {
	img, err := kubeenv.NewImage(bin, "meshbench", nil)
	if err != nil {
		return "", fmt.Errorf("build the meshbench image: %w", err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	tag, err := name.NewTag(repo+"/meshbench:"+d.Hex[:16], name.StrictValidation)
	if err != nil {
		return "", fmt.Errorf("--image-repo %q: %w", repo, err)
	}
	if err := remote.Write(tag, img, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return "", fmt.Errorf("push the meshbench image to %s: %w", tag, err)
	}
	return tag.Context().Digest(d.String()).String(), nil
}
