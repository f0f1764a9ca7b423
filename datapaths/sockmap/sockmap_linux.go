package sockmap

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/meshbench/meshbench/bpf/sockmap"
	"github.com/meshbench/meshbench/bpf/steer"
	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/datapaths/proxy"
	"github.com/meshbench/meshbench/datapaths/sidecar"
	"github.com/meshbench/meshbench/harness/testbed"
)

// Name is the datapath's name in scenarios and results.
const Name = "sockmap"

// New returns the sockmap datapath.
func New() datapaths.Datapath {
	return sidecar.New(sidecar.Options{Name: Name, Steering: &Steering{}})
}

// Steering is the eBPF part of the datapath: it implements
// sidecar.Steering.
type Steering struct {
	steer   *steer.Objects
	sockmap *sockmap.Objects
	atts    []interface{ Close() error }
}

var _ sidecar.Steering = (*Steering)(nil)

// Source implements sidecar.Steering.
func (s *Steering) Source() string {
	return "BPF maps (steer and sockmap counters)"
}

// Install loads the programs and attaches them to every pod's cgroup.
func (s *Steering) Install(ctx context.Context, pods []*testbed.Pod) (err error) {
	defer func() {
		if err != nil {
			err = errors.Join(err, s.Uninstall(ctx))
		}
	}()
	s.steer, err = steer.Load(steer.Config{
		Proxy:   netip.MustParseAddrPort("127.0.0.1:15001"),
		SkipUID: sidecar.ProxyUID,
	})
	if err != nil {
		return err
	}
	// The harness reads the proxies' and echo servers' counters from
	// outside the pods' cgroups: those connections are not the mesh's.
	s.sockmap, err = sockmap.Load(sockmap.Config{IgnorePorts: []uint16{proxy.DefaultAdminPort, datapaths.EchoAdminPort}})
	if err != nil {
		return err
	}
	for _, p := range pods {
		if p.CgroupPath == "" {
			return fmt.Errorf("pod %s has no cgroup v2 directory: %w", p.Name, datapaths.ErrNotSupported)
		}
		a, err := s.steer.AttachCgroup(p.CgroupPath)
		if err != nil {
			return err
		}
		s.atts = append(s.atts, a)
		b, err := s.sockmap.AttachCgroup(p.CgroupPath)
		if err != nil {
			return err
		}
		s.atts = append(s.atts, b)
	}
	return nil
}

// Counters implements sidecar.Steering.
func (s *Steering) Counters() (map[string]int64, error) {
	out := map[string]int64{}
	for _, src := range []interface {
		Counters() (map[string]uint64, error)
	}{s.steer, s.sockmap} {
		c, err := src.Counters()
		if err != nil {
			return nil, err
		}
		for k, v := range c {
			out[k] = int64(v)
		}
	}
	return out, nil
}

// Verify implements sidecar.Steering: sk_msg must have redirected at least
// one message per successful request (the request from the app to its
// sidecar; responses and the server side add more).
func (s *Steering) Verify(delta map[string]int64, successes int64) (bool, string) {
	red := delta["sockmap_redirects"]
	ok := red >= successes-successes/20
	return ok, fmt.Sprintf("sk_msg redirected %d messages (%d bytes), %d misses; connect4 rewrote %d connects",
		red, delta["sockmap_bytes"], delta["sockmap_redirect_misses"], delta["steer_rewrites"])
}

// Uninstall implements sidecar.Steering: detach everything, then unload.
func (s *Steering) Uninstall(ctx context.Context) error {
	var errs []error
	for i := len(s.atts) - 1; i >= 0; i-- {
		errs = append(errs, s.atts[i].Close())
	}
	s.atts = nil
	if s.sockmap != nil {
		errs = append(errs, s.sockmap.Close())
		s.sockmap = nil
	}
	if s.steer != nil {
		errs = append(errs, s.steer.Close())
		s.steer = nil
	}
	return errors.Join(errs...)
}
