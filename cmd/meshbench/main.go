// Command meshbench compares service-mesh datapath architectures on a
// testbed it builds itself. See the README. It is also the program the
// harness starts in pods (echo, load, proxy, forwarder, agent, pause), so
// it carries no Kubernetes client: commands that need one are handed to
// meshbench-kube.
package main

import "github.com/meshbench/meshbench/cmd/meshbench/app"

func main() { app.Main() }
