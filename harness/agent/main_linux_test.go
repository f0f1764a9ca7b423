package agent

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshbench/meshbench/harness/agent/agentpb"
)

func TestListenLocalOnly(t *testing.T) {
	for _, a := range []string{"0.0.0.0:15080", "198.18.0.1:15080", ":15080", "localhost:1"} {
		if l, err := listenLocal(a); err == nil {
			l.Close()
			t.Errorf("%s: listening", a)
		}
	}
	l, err := listenLocal("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
}

// TestMainServesUntilCancelled runs `meshbench agent` on a unix socket:
// it answers an authenticated call (ip in its own network namespace,
// read-only) and returns when its context ends.
func TestMainServesUntilCancelled(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (the agent enters network namespaces)")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte("fedcba9876543210fedcba9876543210\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- Main(ctx, []string{"--listen", "unix:" + sock, "--token-file", tok}, &out, os.Stderr) }()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(TokenCredentials("fedcba9876543210fedcba9876543210")))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := agentpb.NewAgentClient(conn)
	var r *agentpb.ExecResult
	for range 100 {
		r, err = c.Exec(ctx, &agentpb.ExecRequest{Argv: []string{"ip", "-o", "link", "show", "lo"}})
		if err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || !strings.Contains(string(r.GetStdout()), "lo:") {
		t.Fatalf("exec: %v %v", r, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Main: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Main did not return after cancel")
	}
}
