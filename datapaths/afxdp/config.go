package afxdp

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
)

// AdminAddr is where a forwarder serves /stats, on its node's loopback.
const AdminAddr = "127.0.0.1:15100"

// VIPRange is the range service VIPs are taken from.
var VIPRange = netip.MustParsePrefix("198.19.128.0/17")

// Config is what one node's forwarder needs to know about the cluster.
type Config struct {
	// Node is the index of the forwarder's node in Nodes.
	Node int `json:"node"`
	// Admin is the address of the /stats endpoint; AdminAddr when "".
	Admin    string          `json:"admin,omitempty"`
	Nodes    []NodeConfig    `json:"nodes"`
	Pods     []PodConfig     `json:"pods"`
	Services []ServiceConfig `json:"services"`
}

// NodeConfig describes one node.
type NodeConfig struct {
	Name    string       `json:"name"`
	Index   int          `json:"index"`
	PodCIDR netip.Prefix `json:"pod_cidr"`
	Gateway netip.Addr   `json:"gateway"`
	// Uplink is the node's interface toward the other nodes and UplinkMAC
	// its address; BridgeMAC is the pods' gateway's address.
	Uplink    string `json:"uplink"`
	UplinkMAC string `json:"uplink_mac"`
	BridgeMAC string `json:"bridge_mac"`
}

// PodConfig describes one meshed pod.
type PodConfig struct {
	Name     string     `json:"name"`
	Node     int        `json:"node"`
	IP       netip.Addr `json:"ip"`
	MAC      string     `json:"mac"`
	HostVeth string     `json:"host_veth"`
}

// ServiceConfig describes one service: connections to VIP:Port (TCP or
// UDP) go to one of Backends.
type ServiceConfig struct {
	Name     string           `json:"name"`
	VIP      netip.Addr       `json:"vip"`
	Port     uint16           `json:"port"`
	Backends []netip.AddrPort `json:"backends"`
}

// ParseConfig decodes and checks a JSON Config.
func ParseConfig(b []byte) (*Config, error) {
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("parse forwarder config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate checks that the config is complete and consistent.
func (c *Config) Validate() error {
	if c.Node < 0 || c.Node >= len(c.Nodes) {
		return fmt.Errorf("forwarder config: node %d not among %d nodes", c.Node, len(c.Nodes))
	}
	for i, n := range c.Nodes {
		if n.Index != i {
			return fmt.Errorf("forwarder config: node %s has index %d at position %d", n.Name, n.Index, i)
		}
		for _, m := range []string{n.UplinkMAC, n.BridgeMAC} {
			if _, err := net.ParseMAC(m); err != nil {
				return fmt.Errorf("forwarder config: node %s: %w", n.Name, err)
			}
		}
	}
	for _, p := range c.Pods {
		if !p.IP.Is4() {
			return fmt.Errorf("forwarder config: pod %s: address %s is not IPv4", p.Name, p.IP)
		}
		if p.Node < 0 || p.Node >= len(c.Nodes) {
			return fmt.Errorf("forwarder config: pod %s on unknown node %d", p.Name, p.Node)
		}
		if _, err := net.ParseMAC(p.MAC); err != nil {
			return fmt.Errorf("forwarder config: pod %s: %w", p.Name, err)
		}
	}
	for _, s := range c.Services {
		if !s.VIP.Is4() || !VIPRange.Contains(s.VIP) {
			return fmt.Errorf("forwarder config: service %s: VIP %s is not in %s", s.Name, s.VIP, VIPRange)
		}
		if len(s.Backends) == 0 {
			return fmt.Errorf("forwarder config: service %s has no backends", s.Name)
		}
	}
	return nil
}
