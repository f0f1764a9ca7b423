package steer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/meshbench/meshbench/bpf/internal/memlock"
	"github.com/meshbench/meshbench/bpf/internal/percpu"

	"github.com/meshbench/meshbench/internal/uids"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
)

// ProxyUID is the uid whose connects are never steered unless
// Config.SkipUID says otherwise: the proxy's own, as in Istio.
const ProxyUID = uids.Proxy

// SOOriginalDst is the IPPROTO_IP socket option (SO_ORIGINAL_DST) whose
// answer the getsockopt program gives the proxy.
const SOOriginalDst = 80

// DefaultMeshed is the destination prefix steered when Config.Meshed is
// empty: the testbed's benchmarking range.
var DefaultMeshed = netip.MustParsePrefix("198.18.0.0/15")

// counterNames are the keys Counters returns, in the C enum's order.
var counterNames = []string{
	"steer_rewrites",
	"steer_skipped_uid",
	"steer_skipped_dst",
	"steer_tuples",
	"steer_getsockopt_hits",
	"steer_getsockopt_misses",
}

// Config says where connects are steered to and which ones are.
type Config struct {
	// Proxy is the IPv4 address and port connects are rewritten to, such
	// as 127.0.0.1:15001 for a sidecar or the node's address for a node
	// proxy. Connects to Proxy itself are never rewritten.
	Proxy netip.AddrPort
	// Meshed are the destination prefixes whose connects are steered;
	// empty means DefaultMeshed. Loopback is never steered unless listed.
	Meshed []netip.Prefix
	// Ports, when not empty, limits steering to these destination ports.
	Ports []uint16
	// SkipUID is the uid whose connects are left alone (the proxy's own,
	// or they would loop back into it); 0 means ProxyUID.
	SkipUID uint32
}

// Objects are the loaded programs and maps. One Objects can be attached to
// many cgroups; Close it after closing every Attachment.
type Objects struct {
	objs steerObjects
}

// Load checks cfg, and loads the programs and maps into the kernel with
// cfg's settings.
func Load(cfg Config) (*Objects, error) {
	if !cfg.Proxy.IsValid() || !cfg.Proxy.Addr().Is4() || cfg.Proxy.Port() == 0 {
		return nil, fmt.Errorf("load steer: proxy %v is not an IPv4 address and port", cfg.Proxy)
	}
	meshed := cfg.Meshed
	if len(meshed) == 0 {
		meshed = []netip.Prefix{DefaultMeshed}
	}
	for _, p := range meshed {
		if !p.IsValid() || !p.Addr().Is4() {
			return nil, fmt.Errorf("load steer: meshed prefix %v is not IPv4", p)
		}
	}
	skip := cfg.SkipUID
	if skip == 0 {
		skip = ProxyUID
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("load steer: %w", err)
	}
	spec, err := loadSteer()
	if err != nil {
		return nil, fmt.Errorf("load steer spec: %w", err)
	}
	ip := cfg.Proxy.Addr().As4()
	filter := uint8(0)
	if len(cfg.Ports) > 0 {
		filter = 1
	}
	for name, v := range map[string]any{
		"proxy_ip4":    binary.NativeEndian.Uint32(ip[:]),
		"proxy_port":   cfg.Proxy.Port(),
		"skip_uid":     skip,
		"filter_ports": filter,
	} {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("load steer: set %s: %w", name, err)
		}
	}
	o := &Objects{}
	if err := spec.LoadAndAssign(&o.objs, nil); err != nil {
		return nil, fmt.Errorf("load steer: %w", err)
	}
	one := uint8(1)
	for _, p := range meshed {
		p = p.Masked()
		a := p.Addr().As4()
		k := steerLpmKey{Prefixlen: uint32(p.Bits()), Ip4: binary.NativeEndian.Uint32(a[:])}
		if err := o.objs.MeshedCidrs.Put(&k, &one); err != nil {
			o.Close()
			return nil, fmt.Errorf("load steer: add meshed prefix %v: %w", p, err)
		}
	}
	for _, port := range cfg.Ports {
		if err := o.objs.MeshedPorts.Put(&port, &one); err != nil {
			o.Close()
			return nil, fmt.Errorf("load steer: add meshed port %d: %w", port, err)
		}
	}
	return o, nil
}

// Attachment is a set of programs attached to one cgroup. Close detaches
// them all.
type Attachment struct {
	// Path is the cgroup v2 directory the programs are attached to.
	Path  string
	links []link.Link
}

// Close detaches every program of the attachment and joins the errors.
func (a *Attachment) Close() error {
	var errs []error
	for _, l := range a.links {
		if err := l.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	a.links = nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("detach steer from %s: %w", a.Path, err)
	}
	return nil
}

// LinkIDs returns the kernel ids of the attachment's BPF links (for leak
// checks); links the kernel could not describe are left out.
func (a *Attachment) LinkIDs() []link.ID {
	var ids []link.ID
	for _, l := range a.links {
		if info, err := l.Info(); err == nil {
			ids = append(ids, info.ID)
		}
	}
	return ids
}

// AttachCgroup attaches connect4, sock_ops and getsockopt to the cgroup v2
// directory cgroupPath (a pod's): the pod's connects are steered, and a
// proxy whose listening socket was created in that cgroup gets
// SO_ORIGINAL_DST answered.
func (o *Objects) AttachCgroup(cgroupPath string) (*Attachment, error) {
	return o.attach(cgroupPath, []attachSpec{
		{ebpf.AttachCGroupInet4Connect, o.objs.SteerConnect4},
		{ebpf.AttachCGroupSockOps, o.objs.SteerSockops},
		{ebpf.AttachCGroupGetsockopt, o.objs.SteerGetsockopt},
	})
}

// AttachGetsockopt attaches only the getsockopt program to cgroupPath: for
// a proxy outside the steered pods' cgroups (a node proxy), so that
// SO_ORIGINAL_DST on its accepted sockets is answered. A proxy can instead
// call OriginalDst.
func (o *Objects) AttachGetsockopt(cgroupPath string) (*Attachment, error) {
	return o.attach(cgroupPath, []attachSpec{
		{ebpf.AttachCGroupGetsockopt, o.objs.SteerGetsockopt},
	})
}

type attachSpec struct {
	typ  ebpf.AttachType
	prog *ebpf.Program
}

func (o *Objects) attach(cgroupPath string, specs []attachSpec) (*Attachment, error) {
	a := &Attachment{Path: cgroupPath}
	for _, s := range specs {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroupPath, Attach: s.typ, Program: s.prog})
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("attach steer %v to cgroup %s: %w", s.typ, cgroupPath, err)
		}
		a.links = append(a.links, l)
	}
	return a, nil
}

// OriginalDst returns the destination the client at client meant before
// its connect was steered to proxy, looked up in the map the sock_ops
// program fills once the connection is established. ok is false when the
// connection was not steered (or its record was evicted).
func (o *Objects) OriginalDst(client, proxy netip.AddrPort) (dst netip.AddrPort, ok bool, err error) {
	if !client.Addr().Is4() || !proxy.Addr().Is4() {
		return netip.AddrPort{}, false, nil
	}
	s, d := client.Addr().As4(), proxy.Addr().As4()
	k := steerTuple{
		Sip:   binary.NativeEndian.Uint32(s[:]),
		Dip:   binary.NativeEndian.Uint32(d[:]),
		Sport: client.Port(),
		Dport: proxy.Port(),
	}
	var v steerOrigDst
	if err := o.objs.OrigByTuple.Lookup(&k, &v); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return netip.AddrPort{}, false, nil
		}
		return netip.AddrPort{}, false, fmt.Errorf("look up original destination of %v: %w", client, err)
	}
	var ip [4]byte
	binary.NativeEndian.PutUint32(ip[:], v.Ip4)
	return netip.AddrPortFrom(netip.AddrFrom4(ip), v.Port), true, nil
}

// Counters returns the programs' counters summed over CPUs, keyed
// steer_rewrites, steer_skipped_uid, steer_skipped_dst, steer_tuples,
// steer_getsockopt_hits and steer_getsockopt_misses.
func (o *Objects) Counters() (map[string]uint64, error) {
	return percpu.Sum(o.objs.Counters, counterNames)
}

// ProgramIDs returns the kernel ids of the loaded programs (for leak
// checks).
func (o *Objects) ProgramIDs() ([]ebpf.ProgramID, error) {
	var ids []ebpf.ProgramID
	for _, p := range []*ebpf.Program{o.objs.SteerConnect4, o.objs.SteerSockops, o.objs.SteerGetsockopt} {
		info, err := p.Info()
		if err != nil {
			return nil, fmt.Errorf("steer program info: %w", err)
		}
		id, ok := info.ID()
		if !ok {
			return nil, fmt.Errorf("steer program %s: kernel gives no id", info.Name)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// Close unloads the programs and maps. Attachments must be closed first;
// a cgroup link keeps its program alive until it is closed.
func (o *Objects) Close() error {
	if err := o.objs.Close(); err != nil {
		return fmt.Errorf("close steer objects: %w", err)
	}
	return nil
}

// MemlockBytes returns the kernel memory its maps and programs hold (their
// memlock, as the kernel accounts it): memory no process's RSS shows.
func (o *Objects) MemlockBytes() (int64, error) {
	return memlock.Bytes(&o.objs.steerMaps, &o.objs.steerPrograms)
}
