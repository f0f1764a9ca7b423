package netns

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SetCreateHook makes Create call fn after each step ("start", "fabric",
// "node n<i>", "cgroups", "pod <name>", "done"); an error fails Create there.
func SetCreateHook(p *Provider, fn func(step string) error) { p.hook = fn }

// TxChecksum reads ifname's transmit checksum offload through ctl.
func TxChecksum(ctl int, ifname string) (bool, error) {
	ev := struct{ cmd, data uint32 }{cmd: unix.ETHTOOL_GTXCSUM}
	var ifr struct {
		name [unix.IFNAMSIZ]byte
		data *struct{ cmd, data uint32 }
		_    [16]byte
	}
	copy(ifr.name[:], ifname)
	ifr.data = &ev
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(ctl), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&ifr)
	if errno != 0 {
		return false, errno
	}
	return ev.data != 0, nil
}
