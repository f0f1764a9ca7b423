package attach

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/meshbench/meshbench/bpf/sockmap"
	"github.com/meshbench/meshbench/bpf/steer"
	"github.com/meshbench/meshbench/internal/nsutil"
)

// Spec is one node's set of the project's BPF programs and where they
// attach. At least one of Steer and Sockmap is set.
type Spec struct {
	// Steer loads the connect4/getsockopt steering programs with this
	// configuration.
	Steer *steer.Config `json:"steer,omitempty"`
	// Sockmap loads the sock_ops/sk_msg splicing programs with this
	// configuration.
	Sockmap *sockmap.Config `json:"sockmap,omitempty"`
	// Cgroups are the cgroup v2 directories connect4 and sock_ops attach
	// to: the pods'. They are absolute paths as the loader sees them (an
	// agent in a DaemonSet sees the node's cgroupfs under its host mount).
	Cgroups []string `json:"cgroups"`
	// Getsockopt are the cgroups where the steering answers
	// SO_ORIGINAL_DST from its map: the node proxies'. Steer only.
	Getsockopt []string `json:"getsockopt,omitempty"`
}

// Meshed is the address range steering may send connects to and steer
// connects from: the testbed's own.
var Meshed = steer.DefaultMeshed

// Validate checks s before anything is loaded: the programs it names, its
// cgroup paths, and that steering stays on loopback and the testbed's
// range (a proxy address or a meshed prefix outside it is refused).
func (s Spec) Validate() error {
	if s.Steer == nil && s.Sockmap == nil {
		return errors.New("attach: no programs (neither steer nor sockmap)")
	}
	if len(s.Getsockopt) > 0 && s.Steer == nil {
		return errors.New("attach: getsockopt cgroups without steer")
	}
	for _, p := range append(append([]string{}, s.Cgroups...), s.Getsockopt...) {
		if err := checkPath(p); err != nil {
			return err
		}
	}
	if c := s.Steer; c != nil {
		if a := c.Proxy.Addr(); !c.Proxy.IsValid() || !a.Is4() || !(a.IsLoopback() || Meshed.Contains(a)) {
			return fmt.Errorf("attach: steering proxy %s is neither loopback nor in %s", c.Proxy, Meshed)
		}
		for _, m := range c.Meshed {
			if !m.IsValid() || m.Bits() < Meshed.Bits() || !Meshed.Contains(m.Addr()) {
				return fmt.Errorf("attach: meshed prefix %s is outside %s", m, Meshed)
			}
		}
	}
	return nil
}

// Set is a loaded and attached Spec.
type Set interface {
	// Counters returns the programs' counters (cumulative), steer_* and
	// sockmap_* as the steer and sockmap packages name them.
	Counters(ctx context.Context) (map[string]uint64, error)
	// MemlockBytes is the kernel memory of the set's programs and maps,
	// read when it was loaded.
	MemlockBytes() int64
	// Update attaches the set's programs to the cgroups in attach too and
	// detaches them from those in detach (Spec.Cgroups): a pod replaced by
	// a new one, with a new cgroup, keeps its node's set, and so the other
	// pods' spliced sockets. The programs and maps stay as they are.
	Update(ctx context.Context, attach, detach []string) error
	// Close detaches and unloads everything; safe to call twice.
	Close(ctx context.Context) error
}

// Loader loads Specs on one node.
type Loader interface {
	AttachBPF(ctx context.Context, spec Spec) (Set, error)
}

// For returns the Loader that reaches the node host is (an nsutil.Host):
// the host itself when it loads BPF (a node agent's client), else this
// process (a nil Host: this machine).
func For(host nsutil.Host) Loader {
	if l, ok := host.(Loader); ok {
		return l
	}
	return Local{}
}

// Local loads in this process, on this machine.
type Local struct{}

// AttachBPF implements Loader.
func (Local) AttachBPF(ctx context.Context, spec Spec) (_ Set, err error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if err := checkCgroups(append(append([]string{}, spec.Cgroups...), spec.Getsockopt...)); err != nil {
		return nil, err
	}
	s := &local{}
	defer func() {
		if err != nil {
			s.Close(ctx)
		}
	}()
	if spec.Steer != nil {
		if s.steer, err = steer.Load(*spec.Steer); err != nil {
			return nil, err
		}
	}
	if spec.Sockmap != nil {
		if s.sockmap, err = sockmap.Load(*spec.Sockmap); err != nil {
			return nil, err
		}
	}
	for _, cg := range spec.Cgroups {
		if err := s.attachCgroup(cg); err != nil {
			return nil, err
		}
	}
	for _, cg := range spec.Getsockopt {
		a, err := s.steer.AttachGetsockopt(cg)
		if err != nil {
			return nil, err
		}
		s.atts = append(s.atts, attachment{cg, false, a})
	}
	for _, o := range s.objects() {
		n, err := o.MemlockBytes()
		if err != nil {
			return nil, err
		}
		s.memlock += n
	}
	return s, nil
}

type objects interface {
	Counters() (map[string]uint64, error)
	MemlockBytes() (int64, error)
	Close() error
}

type local struct {
	mu      sync.Mutex
	steer   *steer.Objects
	sockmap *sockmap.Objects
	atts    []attachment
	memlock int64
}

// attachment is the programs attached to one cgroup.
type attachment struct {
	cgroup string
	// pod: attached as one of Spec.Cgroups (not Getsockopt).
	pod bool
	io.Closer
}

// attachCgroup attaches the set's programs to a pod's cgroup cg.
func (s *local) attachCgroup(cg string) error {
	if s.steer != nil {
		a, err := s.steer.AttachCgroup(cg)
		if err != nil {
			return err
		}
		s.atts = append(s.atts, attachment{cg, true, a})
	}
	if s.sockmap != nil {
		a, err := s.sockmap.AttachCgroup(cg)
		if err != nil {
			return err
		}
		s.atts = append(s.atts, attachment{cg, true, a})
	}
	return nil
}

// Update implements Set. Every path is checked as AttachBPF checks
// Spec.Cgroups; on an error nothing has changed.
func (s *local) Update(_ context.Context, attach, detach []string) error {
	if err := checkCgroups(attach); err != nil {
		return err
	}
	for _, p := range detach {
		if err := checkPath(p); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.objects()) == 0 {
		return errors.New("attach: update of a closed set")
	}
	n := len(s.atts)
	for _, cg := range attach {
		if err := s.attachCgroup(cg); err != nil {
			for _, a := range s.atts[n:] {
				a.Close()
			}
			s.atts = s.atts[:n]
			return err
		}
	}
	var errs []error
	s.atts = slices.DeleteFunc(s.atts, func(a attachment) bool {
		if !a.pod || !slices.Contains(detach, a.cgroup) {
			return false
		}
		errs = append(errs, a.Close())
		return true
	})
	return errors.Join(errs...)
}

func (s *local) objects() []objects {
	var out []objects
	if s.steer != nil {
		out = append(out, s.steer)
	}
	if s.sockmap != nil {
		out = append(out, s.sockmap)
	}
	return out
}

func (s *local) Counters(context.Context) (map[string]uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]uint64{}
	objs := s.objects()
	if len(objs) == 0 {
		return nil, errors.New("attach: counters of a closed set")
	}
	for _, o := range objs {
		c, err := o.Counters()
		if err != nil {
			return nil, err
		}
		for k, v := range c {
			out[k] = v
		}
	}
	return out, nil
}

func (s *local) MemlockBytes() int64 { return s.memlock }

// Close detaches first, then unloads.
func (s *local) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for i := len(s.atts) - 1; i >= 0; i-- {
		errs = append(errs, s.atts[i].Close())
	}
	s.atts = nil
	for _, o := range s.objects() {
		errs = append(errs, o.Close())
	}
	s.steer, s.sockmap = nil, nil
	return errors.Join(errs...)
}

// checkPath checks that p is a clean absolute path.
func checkPath(p string) error {
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return fmt.Errorf("attach: cgroup %q is not a clean absolute path", p)
	}
	return nil
}

// checkCgroups checks that every path is a clean absolute path to a
// cgroup v2 directory below its hierarchy's root.
func checkCgroups(paths []string) error {
	for _, p := range paths {
		if err := checkPath(p); err != nil {
			return err
		}
		if err := isCgroup2(p); err != nil {
			return err
		}
	}
	return nil
}

// isCgroup2 checks that path is a directory of a cgroup v2 hierarchy.
func isCgroup2(path string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return fmt.Errorf("attach: cgroup %s: %w", path, err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		return fmt.Errorf("attach: %s is not in a cgroup v2 hierarchy", path)
	}
	// Never the hierarchy's root: programs there would act on every
	// socket of the machine, not on the run's pods.
	if err := unix.Statfs(filepath.Dir(path), &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		return fmt.Errorf("attach: %s is the root of its cgroup v2 hierarchy, not a pod's cgroup", path)
	}
	return nil
}
