package harness

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed"
)

// calibration is the path of the calibration step as a datapath: the load
// client and the echo server of its own pod, over loopback. Its proof is
// that echo server's own counter.
type calibration struct {
	pod  *testbed.Pod
	port int
	// stats reads an echo server's counters (Options.ReadEchoStats).
	stats func(context.Context, *testbed.Pod) (datapaths.EchoStats, error)
}

var _ datapaths.Datapath = (*calibration)(nil)

func (c *calibration) Name() string                                  { return "calibration" }
func (c *calibration) Install(context.Context, *datapaths.Env) error { return nil }
func (c *calibration) Uninstall(context.Context) error               { return nil }
func (c *calibration) ProofSource() string                           { return "the client pod's echo server (/stats)" }
func (c *calibration) Target(*datapaths.Service) []netip.AddrPort {
	return []netip.AddrPort{netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(c.port))}
}

// Counters reads the client pod's echo server: "echo_requests", and
// "echo_from_loopback", the requests it received from 127.0.0.1.
func (c *calibration) Counters(ctx context.Context) (map[string]int64, error) {
	st, err := c.stats(ctx, c.pod)
	if err != nil {
		return nil, fmt.Errorf("calibration: %w", err)
	}
	return map[string]int64{"echo_requests": st.Requests, "echo_from_loopback": st.ByPeer["127.0.0.1"]}, nil
}

// Verify holds the client pod's echo server to the client's successes, all
// over loopback.
func (c *calibration) Verify(delta map[string]int64, w datapaths.Work) []results.ProofCheck {
	return datapaths.EchoChecks("the client pod's echo server", delta["echo_requests"], delta["echo_from_loopback"], "127.0.0.1 (the same pod)", w)
}
