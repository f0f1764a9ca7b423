package chaos

import "golang.org/x/sys/unix"

// ioctlOutq returns the bytes in a TCP socket's send queue.
func ioctlOutq(fd int) (int, error) { return unix.IoctlGetInt(fd, unix.SIOCOUTQ) }
