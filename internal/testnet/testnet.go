// Package testnet helps tests that start real servers (PostgreSQL,
// prosody, rsyslog) find ports on the loopback interface.
package testnet

import (
	"net"
	"sync"
	"testing"
)

var (
	mu    sync.Mutex
	given = map[int]bool{}
)

// FreePort returns a TCP port free on 127.0.0.1, never the same twice in
// one test binary: a stopped server keeps its port for its restart, so no
// other server may be handed it meanwhile.
func FreePort(t testing.TB) int {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		if !given[port] {
			given[port] = true
			return port
		}
	}
	t.Fatalf("no free port on 127.0.0.1")
	return 0
}
