// Package sink is the transaction driver of herald's outputs: the Provider
// contract (rsyslog's Begin / Do / End over a batch), the error kinds that
// decide between suspending a sink and dead-lettering one event, the
// registry of providers, and the Handler that maps commits onto JetStream
// acks. Each provider lives in a package below this one.
package sink
