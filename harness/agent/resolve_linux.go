package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/meshbench/meshbench/internal/cgroupfs"
	"github.com/meshbench/meshbench/internal/nsutil"
)

// PodHandles are a pod's handles on this node.
type PodHandles struct {
	UID string
	// PIDs are every process of the pod (its sandbox's pause process
	// included), sorted.
	PIDs []int
	// NetnsPath is the pod's network namespace (/proc/<pid>/ns/net of its
	// oldest process); HostNetwork says it is the node's own.
	NetnsPath   string
	HostNetwork bool
	// CgroupPath is the pod's cgroup v2 directory (the kubelet's pod
	// cgroup, parent of its containers'), "" without cgroup v2;
	// MemoryCgroupPath the v1 memory controller's, on hybrid hosts.
	CgroupPath       string
	MemoryCgroupPath string
	// IP, PodVeth and MAC are the pod's interface; HostVeth and
	// HostVethMAC the peer end in the node's namespace. Empty for
	// hostNetwork pods.
	IP          netip.Addr
	PodVeth     string
	MAC         string
	HostVeth    string
	HostVethMAC string
}

// Resolver finds pods' handles on this node.
type Resolver struct {
	// Proc is the procfs of the node's PID namespace. Default /proc.
	Proc string
	// Roots are the cgroup mounts. Default: cgroupfs.Find().
	Roots *cgroupfs.Roots
	// HostNetns is the namespace of the pods' host-side veths (the node's
	// network namespace). Default: the agent's own (it runs with
	// hostNetwork).
	HostNetns string
	// Agent is the agent's own pid in Proc, 0 for none. Its children are
	// not their pod's own processes: the tools it runs (which enter other
	// pods' namespaces) and the processes it started. A pod is resolved
	// from its containers.
	Agent int
}

// ErrNotOnNode is returned (wrapped) when no process on this node belongs
// to the pod.
var ErrNotOnNode = errors.New("no process of the pod on this node")

// Resolve finds the pod with the given UID.
func (r *Resolver) Resolve(uid string) (*PodHandles, error) {
	if uid == "" || strings.ContainsAny(uid, "/ ") {
		return nil, fmt.Errorf("pod uid %q: invalid", uid)
	}
	proc := r.Proc
	if proc == "" {
		proc = "/proc"
	}
	roots := r.Roots
	if roots == nil {
		found, err := cgroupfs.Find()
		if err != nil {
			return nil, err
		}
		roots = &found
	}
	h := &PodHandles{UID: uid}
	var v2, v1mem string
	ents, err := os.ReadDir(proc)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		lines, err := readCgroups(filepath.Join(proc, e.Name(), "cgroup"))
		if err != nil {
			continue // exited meanwhile
		}
		podV2, podMem, ok := podCgroups(lines, uid)
		if !ok {
			continue
		}
		if r.Agent != 0 && parentOf(filepath.Join(proc, e.Name(), "stat")) == r.Agent {
			continue
		}
		h.PIDs = append(h.PIDs, pid)
		if v2 == "" {
			v2 = podV2
		}
		if v1mem == "" {
			v1mem = podMem
		}
	}
	if len(h.PIDs) == 0 {
		return nil, fmt.Errorf("pod uid %s: %w (is it scheduled here and running?)", uid, ErrNotOnNode)
	}
	slices.Sort(h.PIDs)
	if v2 != "" && roots.V2 != "" {
		h.CgroupPath = filepath.Join(roots.V2, v2)
	}
	if v1mem != "" && roots.V1Memory != "" {
		h.MemoryCgroupPath = filepath.Join(roots.V1Memory, v1mem)
	}

	// Every process of a pod shares its sandbox's network namespace.
	var ino uint64
	for _, pid := range h.PIDs {
		p := filepath.Join(proc, strconv.Itoa(pid), "ns", "net")
		i, err := inode(p)
		if err != nil {
			continue
		}
		if h.NetnsPath == "" {
			h.NetnsPath, ino = p, i
		} else if i != ino {
			return nil, fmt.Errorf("pod uid %s: its processes are in different network namespaces (%s and pid %d)", uid, h.NetnsPath, pid)
		}
	}
	if h.NetnsPath == "" {
		return nil, fmt.Errorf("pod uid %s: %w (its processes exited)", uid, ErrNotOnNode)
	}
	hostNetns := r.HostNetns
	if hostNetns == "" {
		hostNetns = "/proc/self/ns/net"
	}
	hostIno, err := inode(hostNetns)
	if err != nil {
		return nil, err
	}
	if ino == hostIno {
		h.HostNetwork = true
		return h, nil
	}
	if err := h.interfaces(hostNetns); err != nil {
		return nil, fmt.Errorf("pod uid %s: %w", uid, err)
	}
	return h, nil
}

// interfaces finds the pod's veth and its peer in the node's namespace.
func (h *PodHandles) interfaces(hostNetns string) error {
	var peerIndex int
	err := nsutil.Do(h.NetnsPath, func() error {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			if l.Type() != "veth" {
				continue
			}
			addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
			if err != nil || len(addrs) == 0 {
				continue
			}
			ip, ok := netip.AddrFromSlice(addrs[0].IP.To4())
			if !ok {
				continue
			}
			h.IP, h.PodVeth, h.MAC = ip, l.Attrs().Name, l.Attrs().HardwareAddr.String()
			peerIndex = l.Attrs().ParentIndex
			return nil
		}
		return errors.New("no veth with an IPv4 address in the pod's network namespace")
	})
	if err != nil {
		return err
	}
	return nsutil.Do(hostNetns, func() error {
		l, err := netlink.LinkByIndex(peerIndex)
		if err != nil {
			return fmt.Errorf("the host end of %s (ifindex %d) in %s: %w", h.PodVeth, peerIndex, hostNetns, err)
		}
		h.HostVeth, h.HostVethMAC = l.Attrs().Name, l.Attrs().HardwareAddr.String()
		return nil
	})
}

func inode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

func readCgroups(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines, sc.Err()
}

// podCgroups returns, from a process's /proc/<pid>/cgroup lines, the
// pod-level cgroup of the pod with that UID in the v2 hierarchy and in
// the v1 memory controller (paths relative to their mounts), and whether
// the process belongs to the pod at all. The kubelet names the pod's
// cgroup pod<uid> (cgroupfs driver) or ...-pod<uid with _>.slice
// (systemd driver).
func podCgroups(lines []string, uid string) (v2, v1mem string, ok bool) {
	cgfs := "pod" + uid
	systemd := "pod" + strings.ReplaceAll(uid, "-", "_") + ".slice"
	for _, line := range lines {
		// hierarchy-id:controllers:path
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		p := podPrefix(parts[2], cgfs, systemd)
		if p == "" {
			continue
		}
		ok = true
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2 = p
		case slices.Contains(strings.Split(parts[1], ","), "memory"):
			v1mem = p
		}
	}
	return v2, v1mem, ok
}

// podPrefix returns path up to the component naming the pod, or "".
func podPrefix(path, cgfs, systemd string) string {
	comps := strings.Split(path, "/")
	for i, c := range comps {
		if c == cgfs || strings.HasSuffix(c, "-"+systemd) || c == systemd {
			return strings.Join(comps[:i+1], "/")
		}
	}
	return ""
}

// parentOf reads a process's parent pid from its /proc stat file, 0 when
// it cannot (the process exited).
func parentOf(statPath string) int {
	b, err := os.ReadFile(statPath)
	if err != nil {
		return 0
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}
