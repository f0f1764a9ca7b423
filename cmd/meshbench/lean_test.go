package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLean checks that meshbench, which the harness starts in every pod
// (echo servers, load client, proxies), links no Kubernetes client or
// image library: they nearly double the binary and add about 7 MiB of PSS
// to every such process (echo 11.1 → 18.5 MiB measured), which the memory
// figures would then report as the datapath's. meshbench-kube carries them.
func TestLean(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, heavy := range []string{"k8s.io/", "sigs.k8s.io/", "github.com/google/go-containerregistry", "/harness/testbed/kube", "/internal/kubeenv"} {
			if strings.Contains(pkg, heavy) {
				t.Errorf("meshbench links %s", pkg)
			}
		}
	}
}
