package nsutil

import (
	"errors"
	"fmt"
	"syscall"
)

// rootNetns identifies the namespace this process started in, read at init
// while no thread has switched namespaces; the root namespace of pid 1 is
// added when this process may see it.
var rootNetns = func() (ids [][2]uint64) {
	for _, own := range []string{"/proc/self/ns/net", "/proc/1/ns/net"} {
		var st syscall.Stat_t
		if syscall.Stat(own, &st) == nil {
			ids = append(ids, [2]uint64{st.Dev, st.Ino})
		}
	}
	return ids
}()

// RefuseRoot returns an error when the network namespace at path is the
// host's root namespace, or cannot be told apart from it: the harness
// changes only the testbed's own namespaces.
func RefuseRoot(path string) error {
	if path == "" {
		return errors.New("no network namespace path")
	}
	if len(rootNetns) == 0 {
		return errors.New("cannot identify the root network namespace: refusing to change any")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fmt.Errorf("netns %s: %w", path, err)
	}
	for _, id := range rootNetns {
		if id == [2]uint64{st.Dev, st.Ino} {
			return fmt.Errorf("netns %s is the host's root network namespace: meshbench changes only testbed namespaces", path)
		}
	}
	return nil
}
