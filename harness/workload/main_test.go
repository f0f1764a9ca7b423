package workload

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/meshbench/meshbench/harness/stream"
)

func TestParseLoadFlags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		want    ClientOptions
		wantErr bool
	}{
		{
			name: "repeated and comma-separated targets",
			args: []string{"--target", "198.18.0.2:8080,198.18.0.3:8080", "--target", "198.18.0.4:8080",
				"--rate", "250", "--duration", "3s", "--warmup", "500ms", "--connections", "4",
				"--request-size", "64", "--keep-alive=false", "--timeout", "2s", "--window", "250ms", "--path", "/x",
				"--kernel-stamps=false", "--pacer-spin", "0s"},
			want: ClientOptions{Targets: []string{"198.18.0.2:8080", "198.18.0.3:8080", "198.18.0.4:8080"},
				Path: "/x", Rate: 250, Duration: 3 * time.Second, Warmup: 500 * time.Millisecond, Connections: 4,
				RequestSize: 64, KeepAlive: false, Timeout: 2 * time.Second, Window: 250 * time.Millisecond,
				PacerSpin: 0},
		},
		{
			name: "defaults",
			args: []string{"--target", "127.0.0.1:8080"},
			want: ClientOptions{Targets: []string{"127.0.0.1:8080"}, Path: "/", Rate: 100, Duration: 10 * time.Second,
				Warmup: 2 * time.Second, KeepAlive: true, Window: time.Second, Connections: DefaultConnections, KernelStamps: true,
				PacerSpin: DefaultPacerSpin},
		},
		{name: "no target", args: []string{"--rate", "10"}, wantErr: true},
		{name: "bad rate", args: []string{"--target", "127.0.0.1:1", "--rate", "0"}, wantErr: true},
		{name: "target without port", args: []string{"--target", "127.0.0.1"}, wantErr: true},
		{name: "unknown flag", args: []string{"--target", "127.0.0.1:1", "--bogus"}, wantErr: true},
		{name: "positional argument", args: []string{"--target", "127.0.0.1:1", "extra"}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseClientFlags(tc.args, io.Discard)
			if tc.wantErr {
				if !errors.Is(err, ErrUsage) {
					t.Errorf("err = %v, want ErrUsage", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Targets, tc.want.Targets) {
				t.Errorf("targets = %q, want %q", got.Targets, tc.want.Targets)
			}
			if !equalLoadOptions(got, tc.want) {
				t.Errorf("options = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func equalLoadOptions(a, b ClientOptions) bool {
	a.Targets, b.Targets = nil, nil
	a.Logger, b.Logger = nil, nil
	return a.Path == b.Path && a.Rate == b.Rate && a.Duration == b.Duration && a.Warmup == b.Warmup &&
		a.Connections == b.Connections && a.RequestSize == b.RequestSize && a.KeepAlive == b.KeepAlive &&
		a.Timeout == b.Timeout && a.Window == b.Window && a.KernelStamps == b.KernelStamps && a.PacerSpin == b.PacerSpin
}

func TestParseEchoFlags(t *testing.T) {
	o, err := ParseEchoFlags([]string{"--listen", ":9090", "--admin", "127.0.0.1:1234", "--response-size", "1024", "--pod", "p1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.Listen != ":9090" || o.AdminListen != "127.0.0.1:1234" || o.ResponseSize != 1024 || o.PodName != "p1" {
		t.Errorf("options = %+v", o)
	}
	o, err = ParseEchoFlags(nil, io.Discard)
	if err != nil || o.Listen != DefaultEchoListen || o.AdminListen != "127.0.0.1:15090" || o.ResponseSize != DefaultResponseSize {
		t.Errorf("defaults = %+v, %v", o, err)
	}
	if _, err := ParseEchoFlags([]string{"--response-size", "-1"}, io.Discard); !errors.Is(err, ErrUsage) {
		t.Errorf("negative size: err = %v", err)
	}
}

func TestMainUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"bogus"}, {"load"}, {"echo", "--nope"}} {
		if err := Main(context.Background(), args, io.Discard, io.Discard); !errors.Is(err, ErrUsage) {
			t.Errorf("Main(%q) = %v, want ErrUsage", args, err)
		}
	}
}

// Main's load subcommand writes the stream to stdout and logs to stderr.
func TestMainLoad(t *testing.T) {
	e := startEcho(t, 32, "")
	var stdout, stderr bytes.Buffer
	err := Main(context.Background(), []string{"load", "--target", e.addr, "--rate", "100", "--duration", "500ms",
		"--warmup", "100ms", "--request-size", "16", "--window", "250ms"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("Main: %v\n%s", err, stderr.String())
	}
	s, err := stream.ReadStream(&stdout, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, s)
	if s.Successes == 0 || s.Successes != s.Requests || len(s.Windows) != 2 {
		t.Errorf("summary = %+v", s)
	}
	if !bytes.Contains(stderr.Bytes(), []byte("load finished")) {
		t.Errorf("stderr = %q", stderr.String())
	}
}
