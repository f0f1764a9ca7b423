package workload

import (
	"testing"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/meshbench/meshbench/harness/stream"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		res  vegeta.Result
		ok   bool
		want string
	}{
		{"200", vegeta.Result{Code: 200}, true, ""},
		{"204", vegeta.Result{Code: 204}, true, ""},
		{"503", vegeta.Result{Code: 503, Error: "503 Service Unavailable"}, false, stream.ErrorHTTP5xx},
		{"404", vegeta.Result{Code: 404, Error: "404 Not Found"}, false, stream.ErrorHTTP4xx},
		{"302 is not followed", vegeta.Result{Code: 302}, false, stream.ErrorOther},
		{"client timeout", vegeta.Result{Error: `Post "http://198.18.0.2:8080/": context deadline exceeded (Client.Timeout exceeded while awaiting headers)`}, false, stream.ErrorTimeout},
		{"dial timeout", vegeta.Result{Error: "Get \"http://198.18.0.2:8080/\": dial tcp 198.18.0.2:8080: i/o timeout"}, false, stream.ErrorTimeout},
		{"syn timeout", vegeta.Result{Error: "Get \"http://198.18.0.2:8080/\": dial tcp 198.18.0.2:8080: connect: connection timed out"}, false, stream.ErrorTimeout},
		{"refused", vegeta.Result{Error: `Get "http://127.0.0.1:1/": dial tcp 127.0.0.1:1: connect: connection refused`}, false, stream.ErrorConnectionRefused},
		{"reset", vegeta.Result{Error: `Get "http://198.18.0.2:8080/": read tcp 198.18.0.1:4000->198.18.0.2:8080: read: connection reset by peer`}, false, stream.ErrorConnectionReset},
		{"broken pipe", vegeta.Result{Error: "write tcp 198.18.0.1:4000->198.18.0.2:8080: write: broken pipe"}, false, stream.ErrorConnectionReset},
		{"eof", vegeta.Result{Error: `Post "http://198.18.0.2:8080/": EOF`}, false, stream.ErrorConnectionReset},
		{"unexpected eof in body", vegeta.Result{Error: "unexpected EOF"}, false, stream.ErrorConnectionReset},
		{"no route", vegeta.Result{Error: "dial tcp 198.18.9.9:80: connect: no route to host"}, false, stream.ErrorUnreachable},
		{"net unreachable", vegeta.Result{Error: "dial tcp 198.18.9.9:80: connect: network is unreachable"}, false, stream.ErrorUnreachable},
		{"eperm from an OUTPUT drop", vegeta.Result{Error: "dial tcp 198.18.9.9:80: connect: operation not permitted"}, false, stream.ErrorOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := succeeded(&tc.res); got != tc.ok {
				t.Fatalf("succeeded = %v, want %v", got, tc.ok)
			}
			if tc.ok {
				return
			}
			if got := classify(&tc.res); got != tc.want {
				t.Errorf("classify = %q, want %q", got, tc.want)
			}
		})
	}
}
