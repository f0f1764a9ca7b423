// Package netns is the embedded testbed provider: nodes and pods are network
// namespaces joined by veth pairs and bridges, pods also get cgroups.
package netns
