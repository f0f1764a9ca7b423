package kubeenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/meshbench/meshbench/internal/nsutil"
)

// netnsDir is where named network namespaces are bind-mounted, as by
// `ip netns add`.
const netnsDir = "/run/netns"

// netnsHandle is a named network namespace the environment created.
type netnsHandle struct {
	path string
	h    netns.NsHandle
	nl   *netlink.Handle // netlink socket inside the namespace
}

// createNetns creates the named network namespace, sets lo up, turns IPv6
// off and applies sysctls (paths under /proc/sys) inside it.
func createNetns(name string, sysctls map[string]string) (_ *netnsHandle, err error) {
	path := filepath.Join(netnsDir, name)
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return nil, fmt.Errorf("create netns %s: %w", name, err)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return nil, fmt.Errorf("create netns %s: %w", name, err)
	}
	f.Close()
	n := &netnsHandle{path: path, h: -1}
	defer func() {
		if err != nil {
			n.delete()
		}
	}()
	errc := make(chan error, 1)
	go func() {
		// A locked thread enters the new namespace and returns to its own;
		// if it cannot return, the goroutine ends locked and the runtime
		// discards the thread.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		merr := unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, "")
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("return to the original netns: %w", err)
			return
		}
		runtime.UnlockOSThread()
		if merr != nil {
			merr = fmt.Errorf("bind mount: %w", merr)
		}
		errc <- merr
	}()
	if err := <-errc; err != nil {
		return nil, fmt.Errorf("create netns %s: %w", name, err)
	}
	if n.h, err = netns.GetFromPath(path); err != nil {
		return nil, fmt.Errorf("open netns %s: %w", name, err)
	}
	if n.nl, err = netlink.NewHandleAt(n.h); err != nil {
		return nil, fmt.Errorf("netlink in netns %s: %w", name, err)
	}
	lo, err := n.nl.LinkByName("lo")
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", name, err)
	}
	if err := n.nl.LinkSetUp(lo); err != nil {
		return nil, fmt.Errorf("netns %s: set lo up: %w", name, err)
	}
	all := map[string]string{
		"net/ipv6/conf/all/disable_ipv6":     "1",
		"net/ipv6/conf/default/disable_ipv6": "1",
	}
	for k, v := range sysctls {
		all[k] = v
	}
	if err := nsutil.Do(path, func() error {
		for k, v := range all {
			if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("netns %s: sysctl: %w", name, err)
	}
	return n, nil
}

// delete unmounts and removes the namespace; the kernel frees it once no
// process or mount holds it any more.
func (n *netnsHandle) delete() error {
	if n == nil {
		return nil
	}
	if n.nl != nil {
		n.nl.Close()
		n.nl = nil
	}
	if n.h >= 0 {
		n.h.Close()
		n.h = -1
	}
	return removeNetnsPath(n.path)
}

func removeNetnsPath(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount netns %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove netns %s: %w", path, err)
	}
	return nil
}
