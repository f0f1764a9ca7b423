package afxdp

import (
	"encoding/binary"
	"fmt"
	"net"
	"sync/atomic"

	"github.com/meshbench/meshbench/datapaths/maglev"
)

// Frame layout (Ethernet II, IPv4).
const (
	ethLen     = 14
	ipProto    = ethLen + 9
	ipTTL      = ethLen + 8
	ipCsum     = ethLen + 10
	ipSrc      = ethLen + 12
	ipDst      = ethLen + 16
	protoTCP   = 6
	protoUDP   = 17
	tcpCsumOff = 16
	udpCsumOff = 6
)

// endpoint is an IPv4 address and port.
type endpoint struct {
	ip   [4]byte
	port uint16
}

// service is a VIP's backends and their Maglev table.
type service struct {
	backends []endpoint
	table    *maglev.Table
}

// hop is where frames to one pod go: an output and the MACs to write.
type hop struct {
	out      int
	dst, src [6]byte
}

// Drop reasons a frame can have, besides being forwarded.
const (
	dropMalformed = iota
	dropNoRoute
	dropTTL
	numDrops
)

// router decides, per frame and without per-flow state, where it goes and
// how it is rewritten. Outputs are numbered 0..len(local pods)-1 for the
// local pods' veths, in Config.Pods order, and uplinkOut for the uplink.
type router struct {
	hops     map[[4]byte]hop
	services map[endpoint]*service
	// reverse maps a backend endpoint to its service's VIP endpoint, to
	// translate replies back without per-flow state.
	reverse   map[endpoint]endpoint
	uplinkOut int

	natHits, reverseNATHits atomic.Int64
	drops                   [numDrops]atomic.Int64
}

func mac6(s string) ([6]byte, error) {
	var m [6]byte
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return m, fmt.Errorf("bad MAC %q", s)
	}
	copy(m[:], hw)
	return m, nil
}

// newRouter builds the router of cfg.Node. locals lists the local pods in
// output order.
func newRouter(cfg *Config) (r *router, locals []PodConfig, err error) {
	self := cfg.Nodes[cfg.Node]
	bridgeMAC, err := mac6(self.BridgeMAC)
	if err != nil {
		return nil, nil, err
	}
	uplinkMAC, err := mac6(self.UplinkMAC)
	if err != nil {
		return nil, nil, err
	}
	r = &router{hops: map[[4]byte]hop{}, services: map[endpoint]*service{}, reverse: map[endpoint]endpoint{}}
	for _, p := range cfg.Pods {
		if p.Node == cfg.Node {
			locals = append(locals, p)
		}
	}
	r.uplinkOut = len(locals)
	out := 0
	for _, p := range cfg.Pods {
		var h hop
		if p.Node == cfg.Node {
			if h.dst, err = mac6(p.MAC); err != nil {
				return nil, nil, err
			}
			h.out, h.src = out, bridgeMAC
			out++
		} else {
			if h.dst, err = mac6(cfg.Nodes[p.Node].UplinkMAC); err != nil {
				return nil, nil, err
			}
			h.out, h.src = r.uplinkOut, uplinkMAC
		}
		r.hops[p.IP.As4()] = h
	}
	for _, s := range cfg.Services {
		vip := endpoint{s.VIP.As4(), s.Port}
		svc := &service{}
		names := make([]string, 0, len(s.Backends))
		for _, b := range s.Backends {
			e := endpoint{b.Addr().As4(), b.Port()}
			svc.backends = append(svc.backends, e)
			names = append(names, b.String())
			if _, dup := r.reverse[e]; !dup {
				r.reverse[e] = vip
			}
		}
		if svc.table, err = maglev.New(names, maglev.DefaultSize); err != nil {
			return nil, nil, fmt.Errorf("service %s: %w", s.Name, err)
		}
		r.services[vip] = svc
	}
	return r, locals, nil
}

// forward rewrites frame in place for its next hop and returns the output
// to send it on, or false when it must be dropped (and counts why).
func (r *router) forward(frame []byte) (int, bool) {
	if len(frame) < ethLen+20 || binary.BigEndian.Uint16(frame[12:14]) != 0x0800 || frame[ethLen]>>4 != 4 {
		r.drops[dropMalformed].Add(1)
		return 0, false
	}
	ihl := int(frame[ethLen]&0x0f) * 4
	l4 := ethLen + ihl
	proto := frame[ipProto]
	csumOff := 0
	switch proto {
	case protoTCP:
		csumOff = l4 + tcpCsumOff
	case protoUDP:
		csumOff = l4 + udpCsumOff
	}
	if ihl < 20 || csumOff == 0 || len(frame) < csumOff+2 {
		r.drops[dropMalformed].Add(1)
		return 0, false
	}
	if frame[ipTTL] <= 1 {
		r.drops[dropTTL].Add(1)
		return 0, false
	}
	src := endpoint{[4]byte(frame[ipSrc : ipSrc+4]), binary.BigEndian.Uint16(frame[l4:])}
	dst := endpoint{[4]byte(frame[ipDst : ipDst+4]), binary.BigEndian.Uint16(frame[l4+2:])}
	// UDP's checksum is optional: zero means none, and stays none.
	l4csum := !(proto == protoUDP && binary.BigEndian.Uint16(frame[csumOff:]) == 0)
	if svc, ok := r.services[dst]; ok {
		b := svc.backends[svc.table.Lookup(maglev.HashTuple(proto, src.ip, dst.ip, src.port, dst.port))]
		rewrite(frame, ipDst, l4+2, csumOff, l4csum, dst, b)
		dst = b
		r.natHits.Add(1)
	}
	if vip, ok := r.reverse[src]; ok {
		rewrite(frame, ipSrc, l4, csumOff, l4csum, src, vip)
		r.reverseNATHits.Add(1)
	}
	h, ok := r.hops[dst.ip]
	if !ok {
		r.drops[dropNoRoute].Add(1)
		return 0, false
	}
	// Forwarding is routing: decrement the TTL.
	oldWord := binary.BigEndian.Uint16(frame[ipTTL:])
	frame[ipTTL]--
	binary.BigEndian.PutUint16(frame[ipCsum:], csumUpdate16(binary.BigEndian.Uint16(frame[ipCsum:]), oldWord, binary.BigEndian.Uint16(frame[ipTTL:])))
	copy(frame[0:6], h.dst[:])
	copy(frame[6:12], h.src[:])
	return h.out, true
}

// rewrite replaces the address at ipOff and the port at portOff, from old
// to new, updating the IP and the L4 checksums incrementally.
func rewrite(frame []byte, ipOff, portOff, csumOff int, l4csum bool, old, new endpoint) {
	copy(frame[ipOff:ipOff+4], new.ip[:])
	binary.BigEndian.PutUint16(frame[portOff:], new.port)
	ipc := binary.BigEndian.Uint16(frame[ipCsum:])
	ipc = csumUpdate32(ipc, old.ip, new.ip)
	binary.BigEndian.PutUint16(frame[ipCsum:], ipc)
	if !l4csum {
		return
	}
	c := binary.BigEndian.Uint16(frame[csumOff:])
	c = csumUpdate32(c, old.ip, new.ip) // the pseudo-header
	c = csumUpdate16(c, old.port, new.port)
	if c == 0 && frame[ipProto] == protoUDP {
		c = 0xffff // zero would mean "no checksum"
	}
	binary.BigEndian.PutUint16(frame[csumOff:], c)
}

// csumUpdate16 returns checksum c after one 16-bit word of the summed data
// changed from old to new (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')).
func csumUpdate16(c, old, new uint16) uint16 {
	s := uint32(^c) + uint32(^old) + uint32(new)
	s = (s & 0xffff) + (s >> 16)
	s = (s & 0xffff) + (s >> 16)
	return ^uint16(s)
}

// csumUpdate32 is csumUpdate16 for an IPv4 address (two words).
func csumUpdate32(c uint16, old, new [4]byte) uint16 {
	c = csumUpdate16(c, binary.BigEndian.Uint16(old[0:]), binary.BigEndian.Uint16(new[0:]))
	return csumUpdate16(c, binary.BigEndian.Uint16(old[2:]), binary.BigEndian.Uint16(new[2:]))
}
