package agent

import (
	"context"
	"errors"
	"net"

	"github.com/meshbench/meshbench/harness/agent/agentpb"
	"github.com/meshbench/meshbench/internal/iptables"
	"github.com/meshbench/meshbench/internal/nsutil"
)

// RemoveNodeRules deletes the iptables rules of the agent's run in the
// node's own namespace (a node proxy's inbound capture): pods' rules go
// with their pods, but the node's stay unless someone removes them. The
// agent does it when it starts (a restarted agent of the run) and when it
// stops (SIGTERM: its DaemonSet deleted by the harness or by `meshbench
// down`), so a harness that died leaves nothing on the node once its run
// is torn down. It returns how many rules it removed.
func (s *Server) RemoveNodeRules(ctx context.Context) (int, error) {
	if s.RunID == "" {
		return 0, nil
	}
	return iptables.RemoveTagged(ctx, nsutil.Netns{Host: ownTools{s}}, iptables.NodeComment(s.RunID))
}

// ownTools runs the node's network tools as the agent's Exec does, in the
// agent's own process: an nsutil.Host for the node's namespace ("").
type ownTools struct{ s *Server }

func (o ownTools) Exec(ctx context.Context, netns string, argv []string, stdin string) (string, error) {
	res, err := o.s.Exec(ctx, &agentpb.ExecRequest{Argv: argv, NetnsPath: netns, Stdin: []byte(stdin)})
	if err != nil {
		return "", err
	}
	if res.GetExitCode() != 0 {
		return "", &nsutil.ExitError{Argv: argv, Netns: netns, Code: int(res.GetExitCode()), Stderr: string(res.GetStderr())}
	}
	return string(res.GetStdout()), nil
}

func (ownTools) Dial(context.Context, string, string, string) (net.Conn, error) {
	return nil, errors.New("agent: no dial from the agent's own tools")
}
