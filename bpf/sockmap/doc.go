// Package sockmap loads the BPF programs that splice the bytes between two
// sockets of the same pod (an app and its sidecar) socket to socket,
// skipping the loopback TCP stack.
package sockmap
