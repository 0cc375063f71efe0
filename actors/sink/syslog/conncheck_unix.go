//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package syslog

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
)

// peek tells, without blocking and without consuming anything, whether the
// peer closed c (or it failed) and whether bytes are waiting to be read.
// A syslog collector never writes, so a closed or failed connection found
// here is replaced before a transaction is written into it: the first
// write into a socket whose peer is gone succeeds and its bytes are lost.
func peek(c net.Conn) (closed, pending bool) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false, false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return true, false
	}
	var n int
	var rerr error
	var b [1]byte
	if err := raw.Read(func(fd uintptr) bool {
		n, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true // never wait for readability
	}); err != nil {
		return true, false
	}
	switch {
	case errors.Is(rerr, syscall.EAGAIN), errors.Is(rerr, syscall.EWOULDBLOCK), errors.Is(rerr, syscall.EINTR):
		return false, false
	case rerr != nil:
		return true, false
	case n == 0:
		return true, false // orderly shutdown by the peer
	}
	return false, true
}
