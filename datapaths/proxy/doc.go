// Package proxy is the mesh's proxy engine: a builtin Go L4/L7 proxy
// configured only over xDS, and a launcher for Envoy when it is installed.
package proxy
