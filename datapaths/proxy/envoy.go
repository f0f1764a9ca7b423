package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"gopkg.in/yaml.v3"
)

// ErrEnvoyNotFound is returned (wrapped) by the Envoy engine's Start when
// no envoy binary is on PATH.
var ErrEnvoyNotFound = errors.New("no envoy binary on PATH")

// xdsClusterName is the bootstrap's static cluster that reaches the
// control plane.
const xdsClusterName = "xds_cluster"

// EnvoyBootstrap returns the bootstrap that points an Envoy at the control
// plane over its unix socket, with ADS for listeners and clusters (routes
// and endpoints follow over ADS), and its admin endpoint on adminAddr
// ("127.0.0.1:15000"). The result is validated.
func EnvoyBootstrap(nodeID, cluster, xdsSocket, adminAddr string) (*bootstrapv3.Bootstrap, error) {
	host, portStr, err := net.SplitHostPort(adminAddr)
	if err != nil {
		return nil, fmt.Errorf("envoy bootstrap: admin address: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("envoy bootstrap: admin port: %w", err)
	}
	if xdsSocket == "" || nodeID == "" {
		return nil, errors.New("envoy bootstrap: node id and xds socket are required")
	}
	h2, err := anypb.New(&httpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("envoy bootstrap: %w", err)
	}
	ads := &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
	b := &bootstrapv3.Bootstrap{
		Node: &corev3.Node{Id: nodeID, Cluster: cluster},
		Admin: &bootstrapv3.Admin{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
		}}}},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:                   corev3.ApiConfigSource_GRPC,
				TransportApiVersion:       corev3.ApiVersion_V3,
				SetNodeOnFirstMessageOnly: true,
				GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
					EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: xdsClusterName},
				}}},
			},
			LdsConfig: ads,
			CdsConfig: ads,
		},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{Clusters: []*clusterv3.Cluster{{
			Name:                          xdsClusterName,
			ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			ConnectTimeout:                durationpb.New(time.Second),
			TypedExtensionProtocolOptions: map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": h2},
			LoadAssignment: &endpointv3.ClusterLoadAssignment{
				ClusterName: xdsClusterName,
				Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
						Address: &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: xdsSocket}}},
					}},
				}}}},
			},
		}}},
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("envoy bootstrap: %w", err)
	}
	return b, nil
}

// BootstrapJSON renders a bootstrap as indented JSON.
func BootstrapJSON(b *bootstrapv3.Bootstrap) ([]byte, error) {
	v, err := bootstrapValue(b)
	if err != nil {
		return nil, err
	}
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("render bootstrap: %w", err)
	}
	return append(out, '\n'), nil
}

// BootstrapYAML renders a bootstrap as YAML (keys sorted), the form Envoy's
// -c takes.
func BootstrapYAML(b *bootstrapv3.Bootstrap) ([]byte, error) {
	v, err := bootstrapValue(b)
	if err != nil {
		return nil, err
	}
	out, err := yaml.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("render bootstrap: %w", err)
	}
	return out, nil
}

// bootstrapValue returns b's protojson form as plain maps and lists.
func bootstrapValue(b *bootstrapv3.Bootstrap) (any, error) {
	raw, err := protojson.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("render bootstrap: %w", err)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("render bootstrap: %w", err)
	}
	return v, nil
}

// EnvoyOptions configure the Envoy engine.
type EnvoyOptions struct {
	// Binary is the envoy binary; default: "envoy" looked up on PATH.
	Binary    string
	XDSSocket string
	NodeID    string
	// Cluster is the node's cluster; default "meshbench".
	Cluster string
	// AdminAddr; default 127.0.0.1:15000.
	AdminAddr string
	// ConfigDir receives the bootstrap file; default os.TempDir().
	ConfigDir string
	// Concurrency is Envoy's worker threads; default 1.
	Concurrency int
	// ConnectTimeout bounds Ready; default 10s.
	ConnectTimeout time.Duration
	// Stdout and Stderr receive Envoy's output; default discarded.
	Stdout, Stderr io.Writer
	Logger         *slog.Logger
}

// Envoy is the engine that runs the real Envoy binary.
type Envoy struct {
	opts EnvoyOptions
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

var _ Engine = (*Envoy)(nil)

// NewEnvoy returns an Envoy engine; Start runs the binary.
func NewEnvoy(opts EnvoyOptions) *Envoy {
	if opts.AdminAddr == "" {
		opts.AdminAddr = DefaultAdminAddr
	}
	if opts.Cluster == "" {
		opts.Cluster = "meshbench"
	}
	if opts.ConfigDir == "" {
		opts.ConfigDir = os.TempDir()
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 1
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.Stdout == nil {
		opts.Stdout = io.Discard
	}
	if opts.Stderr == nil {
		opts.Stderr = io.Discard
	}
	return &Envoy{opts: opts}
}

// Name is "envoy".
func (e *Envoy) Name() string { return "envoy" }

// EnvoyAvailable returns the path of the envoy binary: binary when it is
// given (it must be an executable file), else "envoy" looked up on PATH; or
// an error wrapping ErrEnvoyNotFound.
func EnvoyAvailable(binary string) (string, error) {
	if binary == "" {
		p, err := exec.LookPath("envoy")
		if err != nil {
			return "", fmt.Errorf("%w (no registry ships one for this machine): %v", ErrEnvoyNotFound, err)
		}
		return p, nil
	}
	st, err := os.Stat(binary)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrEnvoyNotFound, err)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%w: %s is not an executable file", ErrEnvoyNotFound, binary)
	}
	return binary, nil
}

// EnvoyArgs returns the command line that runs Envoy on a bootstrap file.
func EnvoyArgs(binary, bootstrapPath, nodeID string, concurrency int) []string {
	return []string{binary, "-c", bootstrapPath, "--concurrency", strconv.Itoa(concurrency),
		"--base-id-path", bootstrapPath + ".base-id", "--use-dynamic-base-id", "--log-level", "warn",
		"--service-node", nodeID}
}

// Start writes the bootstrap and starts Envoy.
func (e *Envoy) Start(ctx context.Context) error {
	bin := e.opts.Binary
	if bin == "" {
		var err error
		if bin, err = EnvoyAvailable(""); err != nil {
			return fmt.Errorf("start envoy: %w", err)
		}
	}
	b, err := EnvoyBootstrap(e.opts.NodeID, e.opts.Cluster, e.opts.XDSSocket, e.opts.AdminAddr)
	if err != nil {
		return fmt.Errorf("start envoy: %w", err)
	}
	y, err := BootstrapYAML(b)
	if err != nil {
		return fmt.Errorf("start envoy: %w", err)
	}
	path := filepath.Join(e.opts.ConfigDir, "envoy-"+strings.ReplaceAll(e.opts.NodeID, "~", "-")+".yaml")
	if err := os.WriteFile(path, y, 0o644); err != nil {
		return fmt.Errorf("start envoy: %w", err)
	}
	args := EnvoyArgs(bin, path, e.opts.NodeID, e.opts.Concurrency)
	e.cmd = exec.CommandContext(ctx, args[0], args[1:]...)
	e.cmd.Stdout, e.cmd.Stderr = e.opts.Stdout, e.opts.Stderr
	e.cmd.Cancel = func() error { return e.cmd.Process.Signal(syscall.SIGTERM) }
	e.cmd.WaitDelay = 5 * time.Second
	// Envoy dies with this process (see dieWithParent), so killing the proxy
	// (chaos proxy-kill, pod-kill) kills the proxy, not just its wrapper.
	dieWithParent(e.cmd)
	e.done = make(chan struct{})
	started := make(chan error, 1)
	go func() {
		// The parent-death signal fires when the thread that forked the
		// child ends, not the process: hold this thread for Envoy's life.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := e.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		e.err = e.cmd.Wait()
		close(e.done)
	}()
	if err := <-started; err != nil {
		e.cmd, e.done = nil, nil
		return fmt.Errorf("start envoy: %w", err)
	}
	return nil
}

// Ready polls Envoy's /ready until it answers 200 (Envoy is ready once its
// initial ADS configuration is in).
func (e *Envoy) Ready(ctx context.Context) error {
	if e.cmd == nil {
		return errors.New("envoy not started")
	}
	deadline := time.Now().Add(e.opts.ConnectTimeout)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.opts.AdminAddr+"/ready", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-e.done:
			return fmt.Errorf("envoy exited: %v", e.err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w at %s: envoy not ready after %v", ErrControlPlaneUnreachable, e.opts.XDSSocket, e.opts.ConnectTimeout)
		}
	}
}

// Counters reads Envoy's /stats ("name: value" lines), keeping the integer
// ones.
func (e *Envoy) Counters(ctx context.Context) (map[string]int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.opts.AdminAddr+"/stats", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read envoy stats: %w", err)
	}
	defer resp.Body.Close()
	return ParseEnvoyStats(resp.Body)
}

// ParseEnvoyStats parses Envoy's text /stats, keeping integer values.
func ParseEnvoyStats(r io.Reader) (map[string]int64, error) {
	out := map[string]int64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			continue
		}
		if v, err := strconv.ParseInt(strings.TrimSpace(val), 10, 64); err == nil {
			out[name] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse envoy stats: %w", err)
	}
	return out, nil
}

// Stop terminates Envoy and waits for it.
func (e *Envoy) Stop(ctx context.Context) error {
	if e.cmd == nil || e.done == nil {
		return nil
	}
	select {
	case <-e.done:
		return nil
	default:
	}
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(5 * time.Second):
		_ = e.cmd.Process.Kill()
		<-e.done
	case <-ctx.Done():
		_ = e.cmd.Process.Kill()
		<-e.done
	}
	return nil
}
