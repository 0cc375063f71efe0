package syslog

import (
	"net"
	"syscall"
)

// quickAck asks Linux to acknowledge what c receives at once instead of
// delaying the ACK (it falls back to delaying after a while, so it is set
// again before each wait). A RELP server writes its small responses one by
// one and, with Nagle's algorithm, holds each until the previous one is
// acknowledged: with delayed ACKs every transaction would wait about 40 ms
// for its last responses.
func quickAck(c net.Conn) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
