package sinks

import (
	"net"

	"golang.org/x/sys/unix"
)

// unacked returns the bytes written to a TCP socket that its peer has not
// acknowledged yet (SIOCOUTQ); 0 when it cannot tell.
func unacked(c *net.TCPConn) int64 {
	if c == nil {
		return 0
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	var n int
	rc.Control(func(fd uintptr) {
		n, err = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
	})
	if err != nil {
		return 0
	}
	return int64(n)
}
