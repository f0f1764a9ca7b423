//go:build !linux

package workload

// stamper reads a connection; outside Linux there are no kernel
// timestamps.
type stamper struct{}

func (c *clientConn) init(bool) error                        { return nil }
func (s *stamper) reset()                                    {}
func (s *stamper) sent(*clientConn, int)                     {}
func (s *stamper) stamps(*clientConn) (tx, rx int64)         { return 0, 0 }
func (s *stamper) read(c *clientConn, p []byte) (int, error) { return c.conn.Read(p) }
