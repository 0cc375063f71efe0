package sink

// SingleWriter is an optional interface of providers. A provider whose
// SingleWriter answers true has a destination that must have one writer at
// a time across every herald process: two processes appending to one file
// interleave their batches and fight over logrotate's reopen; two sessions
// of one XMPP account knock each other off. Herald then runs the targets
// whose chain lists that sink only in the process holding the sink's lease
// (internal/lease); the other processes running the sink stage wait and
// take over within seconds when the holder dies. Providers that do not
// implement it, or answer false, run in every process running the sink
// stage: their destination takes concurrent writers (PostgreSQL, a NATS
// subject, a syslog collector).
type SingleWriter interface {
	SingleWriter() bool
}

// IsSingleWriter reports whether p must have a single writer.
func IsSingleWriter(p Provider) bool {
	sw, ok := p.(SingleWriter)
	return ok && sw.SingleWriter()
}
