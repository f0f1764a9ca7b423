package sockmap

import (
	"errors"
	"fmt"

	"github.com/meshbench/meshbench/bpf/internal/memlock"
	"github.com/meshbench/meshbench/bpf/internal/percpu"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
)

// counterNames are the keys Counters returns, in the C enum's order.
var counterNames = []string{
	"sockmap_inserted",
	"sockmap_insert_errors",
	"sockmap_redirects",
	"sockmap_redirect_misses",
	"sockmap_bytes",
}

// Objects are the loaded programs and the sockhash, with the sk_msg
// program attached to the sockhash. One Objects can be attached to many
// cgroups; Close it after closing every Attachment.
type Objects struct {
	objs sockmapObjects
	// msg is the sk_msg program's link to the sockhash; nil when the
	// kernel only has BPF_PROG_ATTACH for it (before 6.10).
	msg      link.Link
	attached bool
}

// Config configures the programs.
type Config struct {
	// IgnorePorts (at most MaxIgnorePorts) are ports whose connections are
	// never spliced: the harness's admin endpoints in a pod, read from
	// outside the pod's cgroup, whose replies could never find their peer.
	IgnorePorts []uint16
}

// MaxIgnorePorts is the most ports Config.IgnorePorts can hold.
const MaxIgnorePorts = 4

// Load loads the programs and the sockhash into the kernel and attaches
// the sk_msg program to the sockhash.
func Load(cfg Config) (*Objects, error) {
	if len(cfg.IgnorePorts) > MaxIgnorePorts {
		return nil, fmt.Errorf("load sockmap: %d ignored ports, at most %d", len(cfg.IgnorePorts), MaxIgnorePorts)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("load sockmap: %w", err)
	}
	spec, err := loadSockmap()
	if err != nil {
		return nil, fmt.Errorf("load sockmap spec: %w", err)
	}
	var ports [MaxIgnorePorts]uint16
	copy(ports[:], cfg.IgnorePorts)
	if err := spec.Variables["ignore_ports"].Set(ports); err != nil {
		return nil, fmt.Errorf("load sockmap: set ignore_ports: %w", err)
	}
	o := &Objects{}
	if err := spec.LoadAndAssign(&o.objs, nil); err != nil {
		return nil, fmt.Errorf("load sockmap: %w", err)
	}
	l, err := link.AttachRawLink(link.RawLinkOptions{
		Target:  o.objs.SockHash.FD(),
		Program: o.objs.SockmapRedirect,
		Attach:  ebpf.AttachSkMsgVerdict,
	})
	if err == nil {
		o.msg = l
		return o, nil
	}
	// Kernels before 6.10 have no BPF link for sk_msg.
	if err := link.RawAttachProgram(link.RawAttachProgramOptions{
		Target:  o.objs.SockHash.FD(),
		Program: o.objs.SockmapRedirect,
		Attach:  ebpf.AttachSkMsgVerdict,
	}); err != nil {
		o.objs.Close()
		return nil, fmt.Errorf("attach sk_msg to the sockhash: %w", err)
	}
	o.attached = true
	return o, nil
}

// Attachment is the sock_ops program attached to one cgroup. Close
// detaches it.
type Attachment struct {
	// Path is the cgroup v2 directory the program is attached to.
	Path string
	l    link.Link
}

// Close detaches the program.
func (a *Attachment) Close() error {
	if a.l == nil {
		return nil
	}
	err := a.l.Close()
	a.l = nil
	if err != nil {
		return fmt.Errorf("detach sockmap from %s: %w", a.Path, err)
	}
	return nil
}

// LinkIDs returns the kernel id of the attachment's BPF link (for leak
// checks); empty if the kernel cannot describe it.
func (a *Attachment) LinkIDs() []link.ID {
	if a.l == nil {
		return nil
	}
	info, err := a.l.Info()
	if err != nil {
		return nil
	}
	return []link.ID{info.ID}
}

// AttachCgroup attaches the sock_ops program to the cgroup v2 directory
// cgroupPath (a pod's). Sockets established afterwards by processes in it
// (or accepted on listeners created in it) whose two ends are in the pod
// join the sockhash, and messages between two such sockets are redirected.
func (o *Objects) AttachCgroup(cgroupPath string) (*Attachment, error) {
	l, err := link.AttachCgroup(link.CgroupOptions{
		Path:    cgroupPath,
		Attach:  ebpf.AttachCGroupSockOps,
		Program: o.objs.SockmapSockops,
	})
	if err != nil {
		return nil, fmt.Errorf("attach sockmap sock_ops to cgroup %s: %w", cgroupPath, err)
	}
	return &Attachment{Path: cgroupPath, l: l}, nil
}

// Counters returns the programs' counters summed over CPUs, keyed
// sockmap_inserted, sockmap_insert_errors, sockmap_redirects,
// sockmap_redirect_misses and sockmap_bytes (bytes redirected).
func (o *Objects) Counters() (map[string]uint64, error) {
	return percpu.Sum(o.objs.Counters, counterNames)
}

// LinkIDs returns the kernel id of the sk_msg program's link to the
// sockhash, when the kernel made one (for leak checks).
func (o *Objects) LinkIDs() []link.ID {
	if o.msg == nil {
		return nil
	}
	info, err := o.msg.Info()
	if err != nil {
		return nil
	}
	return []link.ID{info.ID}
}

// ProgramIDs returns the kernel ids of the loaded programs (for leak
// checks).
func (o *Objects) ProgramIDs() ([]ebpf.ProgramID, error) {
	var ids []ebpf.ProgramID
	for _, p := range []*ebpf.Program{o.objs.SockmapSockops, o.objs.SockmapRedirect} {
		info, err := p.Info()
		if err != nil {
			return nil, fmt.Errorf("sockmap program info: %w", err)
		}
		id, ok := info.ID()
		if !ok {
			return nil, fmt.Errorf("sockmap program %s: kernel gives no id", info.Name)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// Close detaches the sk_msg program from the sockhash and unloads the
// programs and maps. Attachments must be closed first. Sockets still in
// the sockhash leave it and go back to the plain TCP path.
func (o *Objects) Close() error {
	var errs []error
	if o.msg != nil {
		if err := o.msg.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach sk_msg: %w", err))
		}
		o.msg = nil
	}
	if o.attached {
		if err := link.RawDetachProgram(link.RawDetachProgramOptions{
			Target:  o.objs.SockHash.FD(),
			Program: o.objs.SockmapRedirect,
			Attach:  ebpf.AttachSkMsgVerdict,
		}); err != nil {
			errs = append(errs, fmt.Errorf("detach sk_msg: %w", err))
		}
		o.attached = false
	}
	if err := o.objs.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close sockmap objects: %w", err)
	}
	return nil
}

// MemlockBytes returns the kernel memory its maps and programs hold (their
// memlock, as the kernel accounts it): memory no process's RSS shows.
func (o *Objects) MemlockBytes() (int64, error) {
	return memlock.Bytes(&o.objs.sockmapMaps, &o.objs.sockmapPrograms)
}
