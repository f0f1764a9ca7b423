//go:build !linux

package metrics

import (
	"context"
	"fmt"
)

// ReadProcess is Linux-only; elsewhere it returns ErrNotSupported.
func ReadProcess(pid int) (ProcStat, error) {
	return ProcStat{}, fmt.Errorf("read process %d: %w", pid, ErrNotSupported)
}

// ReadTree is Linux-only; elsewhere it returns ErrNotSupported.
func ReadTree(pid int, skip map[int]bool) (ProcStat, error) {
	return ProcStat{}, fmt.Errorf("read process %d: %w", pid, ErrNotSupported)
}

// ReadSNMP is Linux-only; elsewhere it returns ErrNotSupported.
func ReadSNMP(netnsPath string) (TCP, error) {
	return TCP{}, fmt.Errorf("read snmp: %w", ErrNotSupported)
}

// SumSNMP is Linux-only; elsewhere it returns ErrNotSupported.
func SumSNMP(paths []string) (TCP, error) {
	return TCP{}, fmt.Errorf("read snmp: %w", ErrNotSupported)
}

// ReadCgroupMemory is Linux-only; elsewhere it returns ErrNotSupported.
func ReadCgroupMemory(dir string) (CgroupMemory, error) {
	return CgroupMemory{}, fmt.Errorf("read cgroup memory: %w", ErrNotSupported)
}

// TakeSnapshot is Linux-only; elsewhere it returns ErrNotSupported.
func TakeSnapshot(ctx context.Context, pids []int, netns []string) (*Snapshot, error) {
	return nil, fmt.Errorf("snapshot: %w", ErrNotSupported)
}
