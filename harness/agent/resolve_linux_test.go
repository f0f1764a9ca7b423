package agent

import (
	"os"
	"path/filepath"
	"testing"
)

func TestPodCgroups(t *testing.T) {
	uid := "0a1b2c3d-1111-2222-3333-444455556666"
	tests := []struct {
		name    string
		lines   []string
		v2, mem string
		belongs bool
	}{
		{"cgroupfs hybrid", []string{
			"12:memory:/meshbench-ab/k0/kubepods/besteffort/pod" + uid + "/c0ffee",
			"1:name=systemd:/",
			"0::/meshbench-ab/k0/kubepods/besteffort/pod" + uid + "/c0ffee",
		}, "/meshbench-ab/k0/kubepods/besteffort/pod" + uid, "/meshbench-ab/k0/kubepods/besteffort/pod" + uid, true},
		{"systemd v2", []string{
			"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a1b2c3d_1111_2222_3333_444455556666.slice/cri-containerd-abc.scope",
		}, "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a1b2c3d_1111_2222_3333_444455556666.slice", "", true},
		{"guaranteed, cgroupfs", []string{"0::/kubepods/pod" + uid + "/abc"}, "/kubepods/pod" + uid, "", true},
		{"another pod", []string{"0::/kubepods/besteffort/pod0a1b2c3d-1111-2222-3333-444455556667/abc"}, "", "", false},
		{"uid only as a prefix", []string{"0::/kubepods/pod" + uid + "0/abc"}, "", "", false},
	}
	for _, tt := range tests {
		v2, mem, ok := podCgroups(tt.lines, uid)
		if v2 != tt.v2 || mem != tt.mem || ok != tt.belongs {
			t.Errorf("%s: %q %q %v, want %q %q %v", tt.name, v2, mem, ok, tt.v2, tt.mem, tt.belongs)
		}
	}
}

func TestParentOf(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		stat string
		want int
	}{
		{"4152 (iptables) S 3823 4152 1 0 -1 4194560", 3823},
		{"77 (a) b (c)) R 12 77 1 0", 12},
		{"garbage", 0},
	} {
		p := filepath.Join(dir, "stat")
		if err := os.WriteFile(p, []byte(tc.stat), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := parentOf(p); got != tc.want {
			t.Errorf("parentOf(%q) = %d, want %d", tc.stat, got, tc.want)
		}
	}
	if got := parentOf(filepath.Join(dir, "gone")); got != 0 {
		t.Errorf("parentOf of a missing file = %d", got)
	}
}
