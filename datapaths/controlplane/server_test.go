package controlplane

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// rawClient is a minimal ADS client that ACKs or NACKs as told.
type rawClient struct {
	t      *testing.T
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node   *corev3.Node
}

func dialRaw(t *testing.T, ctx context.Context, sock, node string) *rawClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &rawClient{t: t, stream: s, node: &corev3.Node{Id: node}}
}

func (c *rawClient) send(typeURL, version, nonce string, names []string, nack string) {
	c.t.Helper()
	req := &discoveryv3.DiscoveryRequest{Node: c.node, TypeUrl: typeURL, VersionInfo: version, ResponseNonce: nonce, ResourceNames: names}
	if nack != "" {
		req.ErrorDetail = &statuspb.Status{Code: 3, Message: nack}
	}
	if err := c.stream.Send(req); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawClient) recv() *discoveryv3.DiscoveryResponse {
	c.t.Helper()
	r, err := c.stream.Recv()
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

func TestACKTracking(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := New(Options{SocketPath: filepath.Join(t.TempDir(), "xds.sock")})
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	// A TCP service: no routes, so the node must ACK clusters, endpoints
	// and listeners.
	m := Model{Proxies: []string{"sidecar~raw"}, Services: []Service{{Name: "db", Port: 5432, Protocol: TCP,
		Endpoints: []Endpoint{{Pod: "db-0", IP: mustAddr("198.18.0.2"), Port: 5432, Healthy: true}}}}}
	v1, err := s.SetModel(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	c := dialRaw(t, ctx, s.SocketPath(), "sidecar~raw")
	c.send(resource.ClusterType, "", "", nil, "")
	cds := c.recv()
	c.send(resource.ClusterType, cds.GetVersionInfo(), cds.GetNonce(), nil, "") // ACK clusters only

	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	err = s.WaitAcked(short, v1, []string{"sidecar~raw"})
	cancelShort()
	if err == nil || !strings.Contains(err.Error(), resource.ListenerType) || strings.Contains(err.Error(), resource.ClusterType+" ") {
		t.Fatalf("WaitAcked after a CDS ACK only = %v, want listeners (not clusters) missing", err)
	}

	c.send(resource.EndpointType, "", "", []string{ClusterName("db", 5432)}, "")
	eds := c.recv()
	c.send(resource.EndpointType, eds.GetVersionInfo(), eds.GetNonce(), []string{ClusterName("db", 5432)}, "")
	c.send(resource.ListenerType, "", "", nil, "")
	lds := c.recv()
	c.send(resource.ListenerType, lds.GetVersionInfo(), lds.GetNonce(), nil, "")
	if err := s.WaitAcked(ctx, v1, []string{"sidecar~raw"}); err != nil {
		t.Fatal(err)
	}

	// v2: the client NACKs the listeners.
	m.Services[0].Endpoints[0].Healthy = false
	v2, err := s.SetModel(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		r := c.recv()
		if r.GetTypeUrl() == resource.ListenerType {
			c.send(r.GetTypeUrl(), v1, r.GetNonce(), nil, "listener outbound: not today")
		} else {
			names := []string(nil)
			if r.GetTypeUrl() == resource.EndpointType {
				names = []string{ClusterName("db", 5432)}
			}
			c.send(r.GetTypeUrl(), r.GetVersionInfo(), r.GetNonce(), names, "")
		}
	}
	err = s.WaitAcked(ctx, v2, []string{"sidecar~raw"})
	if !errors.Is(err, ErrNACK) || !strings.Contains(err.Error(), "not today") {
		t.Fatalf("WaitAcked = %v, want the NACK detail", err)
	}
	if got := s.Nodes(); len(got) != 1 || got[0] != "sidecar~raw" {
		t.Errorf("Nodes = %v", got)
	}
}

func TestWaitAckedUnknownNode(t *testing.T) {
	s := New(Options{SocketPath: filepath.Join(t.TempDir(), "xds.sock")})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.WaitAcked(ctx, "v1", []string{"sidecar~ghost"}); err == nil || !strings.Contains(err.Error(), "no snapshot") {
		t.Errorf("WaitAcked = %v, want the ghost reported", err)
	}
}
