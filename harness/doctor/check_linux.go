package doctor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/meshbench/meshbench/internal/cgroupfs"
	"github.com/meshbench/meshbench/internal/ports"
	"github.com/meshbench/meshbench/internal/uids"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/meshbench/meshbench/internal/nsutil"
)

// featureOrder lists every feature in report order with its group and the
// Debian package that provides it, if any.
var featureOrder = []struct{ name, group, pkg string }{
	{FeatRoot, GroupHost, ""},
	{FeatNetns, GroupHost, ""},
	{FeatVeth, GroupHost, ""},
	{FeatCgroupV2, GroupHost, ""},
	{FeatCgroupV1Mem, GroupHost, ""},
	{FeatBTF, GroupHost, ""},
	{FeatBPF, GroupBPF, ""},
	{FeatProgSockAddr, GroupBPF, ""},
	{FeatProgSockopt, GroupBPF, ""},
	{FeatProgSockOps, GroupBPF, ""},
	{FeatProgSkMsg, GroupBPF, ""},
	{FeatHelperMsgHash, GroupBPF, ""},
	{FeatMapSockHash, GroupBPF, ""},
	{FeatCgroupAttach, GroupBPF, ""},
	{FeatProgXDP, GroupBPF, ""},
	{FeatMapXSKMap, GroupBPF, ""},
	{FeatXDPVeth, GroupBPF, ""},
	{FeatAFXDP, GroupBPF, ""},
	{FeatProgSchedCLS, GroupBPF, ""},
	{FeatIptables, GroupNetfilter, "iptables"},
	{FeatXtREDIRECT, GroupNetfilter, ""},
	{FeatXtOwner, GroupNetfilter, ""},
	{FeatXtStatistic, GroupNetfilter, ""},
	{FeatXtNFQUEUE, GroupNetfilter, ""},
	{FeatXtTPROXY, GroupNetfilter, ""},
	{FeatNetem, GroupQdisc, ""},
	{FeatTBF, GroupQdisc, ""},
	{FeatHTB, GroupQdisc, ""},
	{FeatClsact, GroupQdisc, ""},
	{FeatIP, GroupTools, "iproute2"},
	{FeatTC, GroupTools, "iproute2"},
	{FeatEthtool, GroupTools, "ethtool"},
	{FeatEnvoy, GroupTools, ""},
	{FeatDocker, GroupTools, "docker.io"},
	{FeatDockerDaemon, GroupTools, ""},
	{FeatKind, GroupTools, ""},
	{FeatClang, GroupTools, "clang"},
	{FeatLibbpf, GroupTools, "libbpf-dev"},
}

// prober collects probe results.
type prober struct {
	opts    Options
	log     *slog.Logger
	results map[string]Feature
}

func (p *prober) set(name string, present bool, detail string) {
	p.results[name] = Feature{Name: name, Present: present, Detail: detail}
	p.log.Debug("probe", "feature", name, "present", present, "detail", detail)
}

func (p *prober) setErr(name string, err error, what string) {
	if err != nil {
		p.set(name, false, what+": "+err.Error())
		return
	}
	p.set(name, true, what)
}

// Check probes this host and reports its features and what each datapath,
// fault, proxy engine, provider and task needs. Probes that need root run
// only as root, in a throwaway network namespace and cgroup that Check
// creates and removes; they never touch the root network namespace. Each
// probe is bounded by opts.Timeout; a probe that fails or times out reports
// its feature absent with the reason. Check does not return an error.
func Check(ctx context.Context, opts Options) Report {
	opts = opts.withDefaults()
	p := &prober{opts: opts, log: opts.Logger, results: map[string]Feature{}}
	r := Report{Kernel: kernelRelease()}

	root := os.Geteuid() == 0
	if root {
		p.set(FeatRoot, true, "euid 0")
	} else {
		p.set(FeatRoot, false, fmt.Sprintf("euid %d: the testbed, BPF and netfilter need root", os.Geteuid()))
	}
	cg2, _ := p.probeCgroups()
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		p.set(FeatBTF, false, "no /sys/kernel/btf/vmlinux (kernel built without CONFIG_DEBUG_INFO_BTF)")
	} else {
		p.set(FeatBTF, true, "/sys/kernel/btf/vmlinux")
	}
	bpfOK := p.probeBPF()
	p.probeTools(ctx)

	if root {
		p.probeSandbox(ctx, bpfOK)
		if bpfOK && cg2 != "" {
			p.probeCgroupAttach(cg2)
		} else if cg2 == "" {
			p.set(FeatCgroupAttach, false, "not probed: no cgroup v2 hierarchy")
		}
	}

	for _, f := range featureOrder {
		res, ok := p.results[f.name]
		if !ok {
			res = Feature{Name: f.name, Detail: "not probed"}
			switch {
			case !root:
				res.Detail = "not probed: needs root"
			case !bpfOK && f.group == GroupBPF:
				res.Detail = "not probed: bpf(2) unusable"
			}
		}
		res.Group = f.group
		if !res.Present {
			res.Package = f.pkg
		}
		r.Features = append(r.Features, res)
	}
	r.Requirements = evaluate(r.Features)
	return r
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// probeCgroups finds the cgroup v2 mount and the cgroup v1 memory controller
// and returns their paths ("" when absent).
func (p *prober) probeCgroups() (v2, v1mem string) {
	roots, err := cgroupfs.Find()
	if err != nil {
		p.set(FeatCgroupV2, false, err.Error())
		p.set(FeatCgroupV1Mem, false, err.Error())
		return "", ""
	}
	v2, v1mem = roots.V2, roots.V1Memory
	if v2 != "" {
		detail := "mounted at " + v2
		if c, err := os.ReadFile(filepath.Join(v2, "cgroup.controllers")); err == nil {
			if cs := strings.TrimSpace(string(c)); cs != "" {
				detail += " (controllers: " + cs + ")"
			} else {
				detail += " (no controllers: hybrid hierarchy)"
			}
		}
		p.set(FeatCgroupV2, true, detail)
	} else {
		p.set(FeatCgroupV2, false, "no cgroup2 mount: BPF cgroup hooks (connect4, getsockopt, sock_ops) need one")
	}
	if v1mem != "" {
		p.set(FeatCgroupV1Mem, true, "memory controller at "+v1mem)
	} else {
		p.set(FeatCgroupV1Mem, false, "no cgroup v1 memory controller (on pure cgroup v2 hosts memory is read from the v2 hierarchy)")
	}
	return v2, v1mem
}

// probeBPF checks the bpf syscall, then program, map and helper types with
// cilium/ebpf's feature probes. It reports whether bpf(2) works.
func (p *prober) probeBPF() bool {
	_ = rlimit.RemoveMemlock()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		p.set(FeatBPF, false, "bpf(2) could not create an array map: "+err.Error())
		return false
	}
	m.Close()
	p.set(FeatBPF, true, "created an array map")

	verdict := func(name string, err error, what string) {
		switch {
		case err == nil:
			p.set(name, true, "supported")
		case errors.Is(err, ebpf.ErrNotSupported):
			p.set(name, false, "kernel does not support "+what)
		default:
			p.set(name, false, "probe of "+what+" inconclusive: "+err.Error())
		}
	}
	for _, t := range []struct {
		name string
		pt   ebpf.ProgramType
		what string
	}{
		{FeatProgSockAddr, ebpf.CGroupSockAddr, "cgroup/connect4 programs (CONFIG_CGROUP_BPF)"},
		{FeatProgSockopt, ebpf.CGroupSockopt, "cgroup/getsockopt programs"},
		{FeatProgSockOps, ebpf.SockOps, "sock_ops programs"},
		{FeatProgSkMsg, ebpf.SkMsg, "sk_msg programs (CONFIG_BPF_STREAM_PARSER)"},
		{FeatProgXDP, ebpf.XDP, "XDP programs"},
		{FeatProgSchedCLS, ebpf.SchedCLS, "tc classifier programs (CONFIG_NET_CLS_BPF)"},
	} {
		verdict(t.name, features.HaveProgramType(t.pt), t.what)
	}
	verdict(FeatMapSockHash, features.HaveMapType(ebpf.SockHash), "sockhash maps")
	verdict(FeatMapXSKMap, features.HaveMapType(ebpf.XSKMap), "xskmap maps (CONFIG_XDP_SOCKETS)")
	verdict(FeatHelperMsgHash, features.HaveProgramHelper(ebpf.SkMsg, asm.FnMsgRedirectHash), "bpf_msg_redirect_hash in sk_msg")

	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW, 0)
	if err != nil {
		p.set(FeatAFXDP, false, "socket(AF_XDP) failed: "+err.Error()+" (CONFIG_XDP_SOCKETS)")
	} else {
		unix.Close(fd)
		p.set(FeatAFXDP, true, "socket(AF_XDP) created")
	}
	return true
}

// run runs a command bounded by the probe timeout and returns its trimmed
// combined output.
func (p *prober) run(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = p.opts.Timeout
	out, err := cmd.CombinedOutput()
	s := strings.TrimSpace(string(out))
	if ctx.Err() != nil {
		return s, fmt.Errorf("%s: %w", name, ctx.Err())
	}
	if err != nil {
		if s != "" {
			return s, fmt.Errorf("%s: %w: %s", name, err, firstLine(s))
		}
		return s, fmt.Errorf("%s: %w", name, err)
	}
	return s, nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(l)
}

// probeTool looks name up on PATH and runs it with versionArgs. The tool is
// present when it is on PATH; the version is its first output line.
func (p *prober) probeTool(ctx context.Context, feature, name, hint string, versionArgs ...string) (string, bool) {
	path, err := exec.LookPath(name)
	if err != nil {
		p.set(feature, false, name+" not on PATH"+hint)
		return "", false
	}
	out, err := p.run(ctx, path, versionArgs...)
	v := firstLine(out)
	if err != nil && v == "" {
		v = "version unknown: " + err.Error()
	}
	p.set(feature, true, path+": "+v)
	return out, true
}

func (p *prober) probeTools(ctx context.Context) {
	p.probeTool(ctx, FeatIP, "ip", "", "-V")
	p.probeTool(ctx, FeatTC, "tc", "", "-V")
	p.probeTool(ctx, FeatEthtool, "ethtool", "", "--version")
	if out, ok := p.probeTool(ctx, FeatIptables, "iptables", "", "--version"); ok {
		backend := "unknown backend"
		switch {
		case strings.Contains(out, "nf_tables"):
			backend = "nf_tables backend"
		case strings.Contains(out, "legacy"):
			backend = "legacy backend"
		}
		p.set(FeatIptables, true, firstLine(out)+", "+backend)
	}
	p.probeTool(ctx, FeatEnvoy, "envoy", " (no Debian package ships Envoy; install it from the Envoy project to use the envoy engine)", "--version")
	if _, ok := p.probeTool(ctx, FeatDocker, "docker", "", "version", "--format", "{{.Client.Version}}"); ok {
		out, err := p.run(ctx, "docker", "info", "--format", "{{.ServerVersion}}")
		if err != nil {
			p.set(FeatDockerDaemon, false, "no daemon answered `docker info`: "+firstLine(out))
		} else {
			p.set(FeatDockerDaemon, true, "server "+firstLine(out))
		}
	} else {
		p.set(FeatDockerDaemon, false, "not probed: no docker client")
	}
	p.probeTool(ctx, FeatKind, "kind", " (optional: the kind provider uses kind's Go packages; the kind command only helps to inspect its clusters)", "version")
	p.probeTool(ctx, FeatClang, "clang", "", "--version")
	const helpers = "/usr/include/bpf/bpf_helpers.h"
	if _, err := os.Stat(helpers); err != nil {
		p.set(FeatLibbpf, false, "no "+helpers)
	} else {
		p.set(FeatLibbpf, true, helpers)
	}
}

// randomName returns prefix followed by 8 random hex digits.
func randomName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// createNetns creates a network namespace bound at /run/netns/name.
func createNetns(name string) (string, error) {
	dir := "/run/netns"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create netns %s: %w", name, err)
	}
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return "", fmt.Errorf("create netns %s: %w", name, err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked: it ends with this goroutine, so
		// its namespace change cannot leak to other goroutines.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind mount: %w", err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return "", fmt.Errorf("create netns %s: %w", name, err)
	}
	return path, nil
}

// deleteNetns unmounts and removes a namespace made by createNetns.
func deleteNetns(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("delete netns %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("delete netns %s: %w", path, err)
	}
	return nil
}

// probeSandbox creates a throwaway network namespace and, inside it, a veth
// pair on which it tries qdiscs, XDP and iptables rules. It removes the
// namespace, and with it everything in it, before returning.
func (p *prober) probeSandbox(ctx context.Context, bpfOK bool) {
	path, err := createNetns(randomName("mbt-doctor-"))
	if err != nil {
		p.set(FeatNetns, false, err.Error())
		return
	}
	defer func() {
		if err := deleteNetns(path); err != nil {
			p.set(FeatNetns, false, "created but could not remove a throwaway netns: "+err.Error())
		}
	}()
	p.set(FeatNetns, true, "created and removed a throwaway netns")

	ifindex, h, err := p.probeVeth(path)
	if err == nil {
		defer h.Close()
		p.probeQdiscs(h, ifindex)
		if bpfOK {
			p.probeXDP(path, ifindex)
		}
	}
	p.probeIptables(ctx, path)
}

func (p *prober) probeVeth(path string) (int, *netlink.Handle, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		p.set(FeatVeth, false, "open throwaway netns: "+err.Error())
		return 0, nil, err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		p.set(FeatVeth, false, "netlink in throwaway netns: "+err.Error())
		return 0, nil, err
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "mbt0"}, PeerName: "mbt1"}
	if err := h.LinkAdd(veth); err != nil {
		h.Close()
		p.set(FeatVeth, false, "create a veth pair in a throwaway netns: "+err.Error()+" (CONFIG_VETH)")
		return 0, nil, err
	}
	l, err := h.LinkByName("mbt0")
	if err == nil {
		err = h.LinkSetUp(l)
	}
	if err == nil {
		var peer netlink.Link
		if peer, err = h.LinkByName("mbt1"); err == nil {
			err = h.LinkSetUp(peer)
		}
	}
	if err != nil {
		h.Close()
		p.set(FeatVeth, false, "bring up a veth pair in a throwaway netns: "+err.Error())
		return 0, nil, err
	}
	p.set(FeatVeth, true, "created a veth pair in a throwaway netns")
	return l.Attrs().Index, h, nil
}

func (p *prober) probeQdiscs(h *netlink.Handle, ifindex int) {
	root := netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT}
	for _, q := range []struct {
		name, config string
		qdisc        netlink.Qdisc
	}{
		{FeatNetem, "CONFIG_NET_SCH_NETEM", netlink.NewNetem(root, netlink.NetemQdiscAttrs{Latency: 1000})},
		{FeatTBF, "CONFIG_NET_SCH_TBF", &netlink.Tbf{QdiscAttrs: root, Rate: 131072, Limit: 1220703, Buffer: 16793}},
		{FeatHTB, "CONFIG_NET_SCH_HTB", netlink.NewHtb(root)},
		{FeatClsact, "CONFIG_NET_SCH_INGRESS", &netlink.GenericQdisc{QdiscType: "clsact", QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT}}},
	} {
		kind := q.qdisc.Type()
		if err := h.QdiscAdd(q.qdisc); err != nil {
			p.set(q.name, false, fmt.Sprintf("adding a %s qdisc to a veth in a throwaway netns failed: %v (%s)", kind, err, q.config))
			continue
		}
		p.set(q.name, true, "added a "+kind+" qdisc to a veth in a throwaway netns")
		if err := h.QdiscDel(q.qdisc); err != nil {
			p.log.Debug("delete probe qdisc", "qdisc", kind, "err", err)
		}
	}
}

// probeXDP attaches a pass-everything XDP program to the veth in driver
// (native) mode, as the afxdp datapath does.
func (p *prober) probeXDP(path string, ifindex int) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.XDP,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2 /* XDP_PASS */), asm.Return()},
	})
	if err != nil {
		p.set(FeatXDPVeth, false, "load an XDP program: "+err.Error())
		return
	}
	defer prog.Close()
	err = nsutil.Do(path, func() error {
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPDriverMode})
		if err != nil {
			return err
		}
		return l.Close()
	})
	p.setErr(FeatXDPVeth, err, "attached an XDP program to a veth in driver mode")
}

// probeIptables adds one rule per match or target in the throwaway netns.
// The rules go with the namespace.
func (p *prober) probeIptables(ctx context.Context, path string) {
	bin, err := exec.LookPath("iptables")
	if err != nil {
		for _, f := range []string{FeatXtREDIRECT, FeatXtOwner, FeatXtStatistic, FeatXtNFQUEUE, FeatXtTPROXY} {
			p.set(f, false, "not probed: no iptables binary")
		}
		return
	}
	for _, r := range []struct {
		name string
		args []string
	}{
		{FeatXtREDIRECT, []string{"-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-j", "REDIRECT", "--to-ports", strconv.Itoa(ports.ProxyOutbound)}},
		{FeatXtOwner, []string{"-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-m", "owner", "--uid-owner", strconv.Itoa(uids.Proxy), "-j", "RETURN"}},
		{FeatXtStatistic, []string{"-t", "filter", "-A", "INPUT", "-m", "statistic", "--mode", "random", "--probability", "0.5", "-j", "DROP"}},
		{FeatXtNFQUEUE, []string{"-t", "filter", "-A", "INPUT", "-p", "tcp", "-j", "NFQUEUE", "--queue-num", "7", "--queue-bypass"}},
		{FeatXtTPROXY, []string{"-t", "mangle", "-A", "PREROUTING", "-p", "tcp", "-j", "TPROXY", "--on-port", strconv.Itoa(ports.ProxyOutbound), "--tproxy-mark", "1"}},
	} {
		args := append([]string{"-w", "5"}, r.args...)
		rule := "iptables " + strings.Join(r.args, " ")
		err := nsutil.Do(path, func() error {
			// The child inherits this locked thread's network namespace.
			_, err := p.run(ctx, bin, args...)
			return err
		})
		if err != nil {
			p.set(r.name, false, fmt.Sprintf("`%s` in a throwaway netns failed: %v", rule, err))
			continue
		}
		p.set(r.name, true, "`"+rule+"` accepted in a throwaway netns")
	}
}

// probeCgroupAttach attaches a cgroup/connect4 program to a throwaway cgroup
// under the cgroup v2 mount, as the sockmap and nodeproxy datapaths do.
func (p *prober) probeCgroupAttach(cg2 string) {
	dir := filepath.Join(cg2, randomName("mbt-doctor-"))
	if err := os.Mkdir(dir, 0o755); err != nil {
		p.set(FeatCgroupAttach, false, "create a throwaway cgroup: "+err.Error())
		return
	}
	defer func() {
		if err := os.Remove(dir); err != nil {
			p.log.Warn("remove throwaway cgroup", "path", dir, "err", err)
		}
	}()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.CGroupSockAddr,
		AttachType:   ebpf.AttachCGroupInet4Connect,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()},
	})
	if err != nil {
		p.set(FeatCgroupAttach, false, "load a cgroup/connect4 program: "+err.Error())
		return
	}
	defer prog.Close()
	l, err := link.AttachCgroup(link.CgroupOptions{Path: dir, Attach: ebpf.AttachCGroupInet4Connect, Program: prog})
	if err != nil {
		p.set(FeatCgroupAttach, false, "attach cgroup/connect4 to a throwaway cgroup: "+err.Error())
		return
	}
	if err := l.Close(); err != nil {
		p.log.Warn("detach probe program", "err", err)
	}
	p.set(FeatCgroupAttach, true, "attached cgroup/connect4 to a throwaway cgroup")
}
