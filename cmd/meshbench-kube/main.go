// Command meshbench-kube is meshbench with the Kubernetes side (the kube
// provider, doctor's cluster check, the image builder). meshbench hands
// those commands to it; everything else works the same.
package main

import (
	"github.com/meshbench/meshbench/cmd/meshbench/app"
	_ "github.com/meshbench/meshbench/cmd/meshbench/app/kubeapp"
)

func main() { app.Main() }
