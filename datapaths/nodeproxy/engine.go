package nodeproxy

import (
	"fmt"
	"strconv"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/datapaths/fleet"
	"github.com/meshbench/meshbench/datapaths/proxy"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/scenarios"
)

// Engine returns the engine the node proxies run for services: one proxy
// per node serves every service, so the services' mesh.engine values must
// agree ("auto" defers to the others; scenarios.NodeProxyEngine), and the
// result is resolved as for sidecars (proxy.ResolveEngine: auto is Envoy
// when a binary is found). Services that disagree are an error naming
// them; envoy without a binary wraps datapaths.ErrNotSupported.
//
// Either engine can be the node proxy: the control plane gives a node
// proxy's inbound listener ORIGINAL_DST clusters, which Envoy follows and
// the builtin engine follows with --inbound-original-ip, and both ask the
// accepted socket for SO_ORIGINAL_DST, which the steering's getsockopt
// program answers for the node's cgroup, where the proxy and its children
// run.
func Engine(services []*datapaths.Service, envoyBinary string) (string, error) {
	engines := make([]string, len(services))
	for i, s := range services {
		engines[i] = s.Mesh.Engine
	}
	engine, by, c := scenarios.NodeProxyEngine(engines)
	if c >= 0 {
		return "", fmt.Errorf("datapath %s: service %q has mesh.engine %q but service %q has %q (topology.services[%d] and [%d]): one proxy per node serves every service, so it runs one engine",
			Name, services[by].Name, engine, services[c].Name, engines[c], by, c)
	}
	resolved, err := proxy.ResolveEngine(engine, envoyBinary)
	if err != nil {
		return "", fmt.Errorf("datapath %s: %w", Name, err)
	}
	return resolved, nil
}

// proxyArgs is the command line of node n's proxy: exec (the harness's
// own binary) running `proxy` with engine, and for Envoy the binary envoy.
func proxyArgs(exec []string, f *fleet.Fleet, n *testbed.Node, engine, envoy string) []string {
	args := append(append([]string{}, exec...), "proxy",
		"--xds", f.SocketOn(n.Index),
		"--node-id", fleet.PerNode.NodeID(n.Name),
		"--engine", engine,
		"--admin", proxy.DefaultAdminAddr,
		"--outbound-port", strconv.Itoa(OutboundPort),
		"--inbound-port", strconv.Itoa(InboundPort))
	switch engine {
	case proxy.EngineEnvoy:
		return append(args, "--envoy-binary", envoy, "--config-dir", f.Dir)
	case proxy.EngineHAProxy:
		// Its inbound ORIGINAL_DST clusters are haproxy's transparent
		// servers (0.0.0.0:0), which dial the original address.
		return append(args, "--config-dir", f.Dir)
	}
	return append(args, "--inbound-original-ip")
}
