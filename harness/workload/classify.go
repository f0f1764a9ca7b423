package workload

import (
	"context"
	"io"
	"os"
	"strings"
	"syscall"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/meshbench/meshbench/harness/stream"
)

// vegeta keeps only the text of a request's error (Result.Error), so
// errors are classified by the texts of the errnos and of the Go errors
// that carry them, never by hand-written guesses of their wording.
var (
	timeoutTexts = []string{
		"Client.Timeout exceeded",           // http.Client.Timeout (vegeta.Timeout)
		os.ErrDeadlineExceeded.Error(),      // "i/o timeout": dial or read deadline
		context.DeadlineExceeded.Error(),    // "context deadline exceeded"
		syscall.ETIMEDOUT.Error(),           // "connection timed out": SYN or retransmission timeout
		"timeout awaiting response headers", // http.Transport.ResponseHeaderTimeout
	}
	refusedTexts = []string{syscall.ECONNREFUSED.Error()}
	resetTexts   = []string{
		syscall.ECONNRESET.Error(),   // "connection reset by peer"
		syscall.EPIPE.Error(),        // "broken pipe"
		syscall.ECONNABORTED.Error(), // "software caused connection abort"
		io.EOF.Error(),               // "EOF", "unexpected EOF": closed under the request
		"server closed idle connection",
	}
	unreachableTexts = []string{
		syscall.EHOSTUNREACH.Error(), // "no route to host"
		syscall.ENETUNREACH.Error(),  // "network is unreachable"
		syscall.EHOSTDOWN.Error(),    // "host is down"
	}
)

// succeeded reports whether res is a success: an HTTP 2xx answer, read to
// the end without error.
func succeeded(res *vegeta.Result) bool {
	return res.Error == "" && res.Code >= 200 && res.Code < 300
}

// classify returns the error class of a failed result (stream.Error*).
func classify(res *vegeta.Result) string {
	switch {
	case res.Code >= 500 && res.Code < 600:
		return stream.ErrorHTTP5xx
	case res.Code >= 400 && res.Code < 500:
		return stream.ErrorHTTP4xx
	case res.Code != 0:
		return stream.ErrorOther // 1xx, 3xx (redirects are not followed)
	}
	return classifyMessage(res.Error)
}

// classifyMessage returns the error class of a transport error's text.
func classifyMessage(msg string) string {
	has := func(texts []string) bool {
		for _, t := range texts {
			if strings.Contains(msg, t) {
				return true
			}
		}
		return false
	}
	switch {
	case has(timeoutTexts):
		return stream.ErrorTimeout
	case has(refusedTexts):
		return stream.ErrorConnectionRefused
	case has(unreachableTexts):
		return stream.ErrorUnreachable
	case has(resetTexts):
		return stream.ErrorConnectionReset
	}
	return stream.ErrorOther
}
