// Package afxdp is the AF_XDP user-space fast-path datapath: XDP on each
// pod's host-side veth hands pod TCP and UDP packets to a per-node
// forwarder that resolves service VIPs with Maglev, rewrites addresses and
// MACs, and transmits on the destination veth or the node uplink.
package afxdp
