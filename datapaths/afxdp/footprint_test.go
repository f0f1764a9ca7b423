package afxdp

import (
	"strings"
	"testing"

	"github.com/meshbench/meshbench/harness/testbed"
)

func TestFootprint(t *testing.T) {
	const sock = 12 << 20
	d := &Datapath{nodes: []*testbed.Node{{Name: "n0", Uplink: "up0"}, {Name: "n1", Uplink: "up1"}}}
	if fp := d.Footprint(); !strings.Contains(fp.Basis, "never read") || fp.PodUnits != 0 {
		t.Errorf("before any read: %+v", fp)
	}
	d.last = map[string]Stats{
		"n0": {BPFBytes: 1000, Sockets: []SocketStats{{Interface: "veth-a", MappedBytes: sock}, {Interface: "veth-b", MappedBytes: sock}, {Interface: "up0", MappedBytes: sock}}},
		"n1": {BPFBytes: 1200, Sockets: []SocketStats{{Interface: "veth-c", MappedBytes: sock}, {Interface: "up1", MappedBytes: sock}}},
	}
	fp := d.Footprint()
	if fp.BPFBytes != 2200 || fp.BPFCopies != 2 || fp.PodBytes != sock || fp.PodUnits != 3 || strings.Contains(fp.Basis, "never read") {
		t.Errorf("footprint %+v, want 2200 BPF bytes in 2 copies and 3 pod sockets of %d (uplinks stay per node)", fp, sock)
	}
}
