package afxdp

// Stats is what a forwarder's /stats reports.
type Stats struct {
	// Ready is true once every socket is open and every program attached.
	Ready   bool          `json:"ready"`
	Node    string        `json:"node"`
	Sockets []SocketStats `json:"sockets"`
	// Sums over Sockets.
	RxFrames      int64 `json:"rx_frames"`
	TxFrames      int64 `json:"tx_frames"`
	Dropped       int64 `json:"dropped"`
	FillRingEmpty int64 `json:"fill_ring_empty"`
	RxRingFull    int64 `json:"rx_ring_full"`
	// NATHits counts frames to a VIP rewritten to a backend;
	// ReverseNATHits frames from a backend rewritten to come from the VIP.
	NATHits        int64 `json:"nat_hits"`
	ReverseNATHits int64 `json:"reverse_nat_hits"`
	// Drops by reason, counted in Dropped too.
	DropMalformed int64 `json:"drop_malformed"`
	DropNoRoute   int64 `json:"drop_no_route"`
	DropTTL       int64 `json:"drop_ttl"`
	// XDP are the XDP program's counters (xdp_seen, xdp_redirected,
	// xdp_passed, xdp_no_socket).
	XDP map[string]int64 `json:"xdp"`
	// BPFBytes is the kernel memory of the XDP program and its maps
	// (memlock), which the forwarder's RSS does not show.
	BPFBytes int64 `json:"bpf_bytes"`
}

// SocketStats are one socket's counters.
type SocketStats struct {
	Interface string `json:"interface"`
	// RxFrames were read from the RX ring; TxFrames put on the TX ring.
	RxFrames int64 `json:"rx_frames"`
	TxFrames int64 `json:"tx_frames"`
	// Dropped counts frames the forwarder dropped after receiving them on
	// this socket (no route, malformed, TX ring full) plus the kernel's
	// drops for the socket (rx_dropped, which counts fill-ring-empty drops
	// too, RX ring full, invalid descriptors).
	Dropped int64 `json:"dropped"`
	// FillRingEmpty counts frames the kernel could not deliver because the
	// fill ring was empty (XDP_STATISTICS rx_fill_ring_empty_descs).
	FillRingEmpty int64 `json:"fill_ring_empty"`
	// KernelRxDropped and RxRingFull are the kernel's own socket counters.
	KernelRxDropped int64 `json:"kernel_rx_dropped"`
	RxRingFull      int64 `json:"rx_ring_full"`
	// MappedBytes is the memory the socket maps into the forwarder: its
	// UMEM and its four rings, populated at open (MAP_POPULATE) and so in
	// the forwarder's RSS and PSS from the start, whatever the traffic.
	MappedBytes int64 `json:"mapped_bytes"`
}
