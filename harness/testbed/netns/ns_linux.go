package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ns is a named network namespace being set up: an open handle, a netlink
// handle and a control socket (for ethtool ioctls) bound to it. close
// releases them; the namespace lives on through its bind mount.
type ns struct {
	path string
	fd   *os.File
	nl   *netlink.Handle
	ctl  int
}

func (n *ns) close() {
	if n.nl != nil {
		n.nl.Close()
		n.nl = nil
	}
	if n.fd != nil {
		n.fd.Close()
		n.fd = nil
	}
	if n.ctl >= 0 {
		unix.Close(n.ctl)
		n.ctl = -1
	}
}

// peer returns the namespace as a netlink namespace attribute.
func (n *ns) peer() netlink.NsFd { return netlink.NsFd(n.fd.Fd()) }

// created reports whether path was made: set by newNamedNS as soon as the
// file exists, so that teardown removes it even when a later step fails.
type createdFunc func(path string)

// newNamedNS creates a network namespace bind-mounted at path, as `ip netns
// add` does, and runs setup inside it on the creating thread (for sysctls,
// which /proc/sys/net resolves against the calling thread's namespace). The
// thread returns to its namespace afterwards, or is discarded if it cannot.
func newNamedNS(path string, created createdFunc, setup func() error) (*ns, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	type result struct {
		n   *ns
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("open current netns: %w", err)}
			return
		}
		defer unix.Close(orig)
		n, ferr := makeNS(path, created, setup)
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: the runtime ends it with the goroutine.
			if n != nil {
				n.close()
			}
			ch <- result{err: fmt.Errorf("return from netns %s: %w (after: %v)", path, err, ferr)}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{n, ferr}
	}()
	r := <-ch
	return r.n, r.err
}

// makeNS runs on a locked thread and leaves it in the new namespace.
func makeNS(path string, created createdFunc, setup func() error) (*ns, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("create netns %s: exists (left by a crashed run? remove it with `meshbench down`)", path)
		}
		return nil, fmt.Errorf("create netns %s: %w", path, err)
	}
	f.Close()
	created(path)
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("create netns %s: unshare: %w", path, err)
	}
	if err := unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, ""); err != nil {
		return nil, fmt.Errorf("create netns %s: bind mount: %w", path, err)
	}
	n := &ns{path: path, ctl: -1}
	if n.fd, err = os.Open(path); err != nil {
		return nil, fmt.Errorf("open netns %s: %w", path, err)
	}
	// Sockets belong to the namespace of the thread that creates them.
	if n.nl, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
		n.close()
		return nil, fmt.Errorf("netlink in netns %s: %w", path, err)
	}
	if n.ctl, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
		n.close()
		return nil, fmt.Errorf("control socket in netns %s: %w", path, err)
	}
	// lo is always index 1 in a new namespace.
	if err := n.nl.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1, Name: "lo"}}); err != nil {
		n.close()
		return nil, fmt.Errorf("netns %s: set lo up: %w", path, err)
	}
	// Keep IPv6 (router solicitations, MLD) off the wire: the testbed is
	// IPv4 only, and stray packets would show in datapath counters.
	for _, f := range []string{"/proc/sys/net/ipv6/conf/all/disable_ipv6", "/proc/sys/net/ipv6/conf/default/disable_ipv6"} {
		if err := os.WriteFile(f, []byte("1"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
			n.close()
			return nil, fmt.Errorf("netns %s: write %s: %w", path, f, err)
		}
	}
	if setup != nil {
		if err := setup(); err != nil {
			n.close()
			return nil, fmt.Errorf("netns %s: %w", path, err)
		}
	}
	return n, nil
}

// deleteNS unmounts and removes a named namespace; the kernel frees it (and
// its interfaces, which removes veth peers elsewhere) once nothing else
// holds it. A missing path is not an error.
func deleteNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount netns %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove netns %s: %w", path, err)
	}
	return nil
}

// nsID identifies a namespace by its nsfs inode.
type nsID struct{ dev, ino uint64 }

func statNS(path string) (nsID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nsID{}, err
	}
	return nsID{st.Dev, st.Ino}, nil
}

// setTxChecksum turns transmit checksum offload of ifname on or off through
// the ethtool ioctl on ctl, a socket in the interface's namespace.
func setTxChecksum(ctl int, ifname string, on bool) error {
	ev := struct{ cmd, data uint32 }{cmd: unix.ETHTOOL_STXCSUM}
	if on {
		ev.data = 1
	}
	var ifr struct {
		name [unix.IFNAMSIZ]byte
		data *struct{ cmd, data uint32 }
		_    [16]byte
	}
	if len(ifname) >= unix.IFNAMSIZ {
		return fmt.Errorf("interface name %q too long", ifname)
	}
	copy(ifr.name[:], ifname)
	ifr.data = &ev
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(ctl), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&ifr)
	runtime.KeepAlive(&ev)
	if errno != 0 {
		return fmt.Errorf("ethtool %s tx checksum off: %w", ifname, errno)
	}
	return nil
}
