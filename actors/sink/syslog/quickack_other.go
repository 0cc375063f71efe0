//go:build !linux

package syslog

import "net"

// quickAck is Linux's TCP_QUICKACK; elsewhere delayed ACKs stay.
func quickAck(c net.Conn) {}
