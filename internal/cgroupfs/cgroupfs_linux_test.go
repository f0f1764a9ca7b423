package cgroupfs

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name, in string
		want     Roots
	}{
		{
			name: "hybrid",
			in: `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`,
			want: Roots{V2: "/sys/fs/cgroup/unified", V1Memory: "/sys/fs/cgroup/memory"},
		},
		{
			name: "unified",
			in:   "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n",
			want: Roots{V2: "/sys/fs/cgroup"},
		},
		{
			name: "escaped and joined controllers",
			in:   "35 31 0:32 / /sys/fs/cgroup/cpu\\040mem rw - cgroup cgroup rw,cpu,memory\n",
			want: Roots{V1Memory: "/sys/fs/cgroup/cpu mem"},
		},
		{name: "none", in: "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Parse = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// This host has cgroups: Find must see the v2 hierarchy the tests use.
func TestFind(t *testing.T) {
	r, err := Find()
	if err != nil {
		t.Fatal(err)
	}
	if r.V2 == "" {
		t.Skip("no cgroup2 mount on this host")
	}
	t.Logf("cgroup roots: %+v", r)
}
