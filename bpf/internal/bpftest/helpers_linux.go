package bpftest

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Helper process modes, given as the test binary's first argument.
const (
	modeProxy  = "bpftest-proxy"
	modeClient = "bpftest-client"
)

// Main runs the helper process named by os.Args[1] and exits, or returns
// when the binary was started as a plain test binary. Call it first in
// TestMain.
func Main() {
	if len(os.Args) < 2 {
		return
	}
	var err error
	switch os.Args[1] {
	case modeProxy:
		err = runProxy(os.Args[2:])
	case modeClient:
		err = runClient(os.Args[2:])
	default:
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// runProxy listens on args[0]; it answers every connection with a line
// "ORIG <original destination>" (or "ORIG none") and then echoes. An
// address "[::]:PORT" opens a dual-stack listener, which accepts IPv4
// connections as IPv4-mapped IPv6 sockets (what Go's net.Listen("tcp",
// ":PORT") does); any other address an IPv4 one.
func runProxy(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: bpftest-proxy ADDR")
	}
	network := "tcp4"
	if strings.HasPrefix(args[0], "[::]:") {
		network = "tcp"
	}
	l, err := net.Listen(network, args[0])
	if err != nil {
		return err
	}
	fmt.Println("READY")
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			line := "ORIG none\n"
			if d, err := OriginalDst(c.(*net.TCPConn)); err == nil {
				line = "ORIG " + d.String() + "\n"
			}
			if _, err := io.WriteString(c, line); err != nil {
				return
			}
			Echo(c)
		}()
	}
}

// Echo copies c's input back to it with plain Read and Write calls (never
// splice, which does not see bytes that sk_msg redirected) until EOF.
func Echo(c net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// OriginalDst asks c's socket for SO_ORIGINAL_DST.
func OriginalDst(c *net.TCPConn) (netip.AddrPort, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var (
		m    *unix.IPv6Mreq
		serr error
	)
	if err := rc.Control(func(fd uintptr) {
		m, serr = unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, 80)
	}); err != nil {
		return netip.AddrPort{}, err
	}
	if serr != nil {
		return netip.AddrPort{}, fmt.Errorf("getsockopt SO_ORIGINAL_DST: %w", serr)
	}
	b := m.Multiaddr
	ip := netip.AddrFrom4([4]byte{b[4], b[5], b[6], b[7]})
	return netip.AddrPortFrom(ip, binary.BigEndian.Uint16(b[2:4])), nil
}

// runClient connects to args[0] (from the local address args[3] when
// given), prints the first line it receives as "FIRST <line>", waits
// args[4] milliseconds when given, then makes args[1] round trips of
// args[2] bytes and prints "ROUNDS <n>".
func runClient(args []string) error {
	if len(args) < 3 || len(args) > 5 {
		return errors.New("usage: bpftest-client ADDR ROUNDS SIZE [LOCAL-ADDR [HOLD-MS]]")
	}
	rounds, err := strconv.Atoi(args[1])
	if err != nil {
		return err
	}
	size, err := strconv.Atoi(args[2])
	if err != nil {
		return err
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	if len(args) > 3 {
		local, err := net.ResolveTCPAddr("tcp4", args[3])
		if err != nil {
			return err
		}
		d.LocalAddr = local
	}
	c, err := d.Dial("tcp4", args[0])
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(60 * time.Second)); err != nil {
		return err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("read first line: %w", err)
	}
	fmt.Print("FIRST ", line)
	if len(args) > 4 {
		ms, err := strconv.Atoi(args[4])
		if err != nil {
			return err
		}
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	out := make([]byte, size)
	in := make([]byte, size)
	for i := range out {
		out[i] = byte(i)
	}
	n := 0
	for ; n < rounds; n++ {
		if _, err := c.Write(out); err != nil {
			return fmt.Errorf("round %d: %w", n, err)
		}
		if _, err := io.ReadFull(r, in); err != nil {
			return fmt.Errorf("round %d: %w", n, err)
		}
	}
	fmt.Printf("ROUNDS %d\n", n)
	return nil
}
