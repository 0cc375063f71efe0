// Package receiver holds herald's intake: listeners that accept records
// (syslog over TCP and UDP for now), stamp their arrival, and hand them to a
// Batcher that publishes them durably to the raw stream. Each listener runs
// under a protoactor actor that owns its socket.
package receiver
