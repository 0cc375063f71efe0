// Package receiver holds herald's intake: listeners that accept records
// (syslog over TCP, TLS, UDP and unix sockets here; other kinds in the
// packages below), stamp their arrival, and hand them to a Batcher that
// publishes them durably to the raw stream. Each listener runs under a
// protoactor actor that owns its socket.
package receiver
