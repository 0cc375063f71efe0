package xmpp

import "github.com/herald-router/herald/actors/sink"

// SingleWriter implements sink.SingleWriter: two sessions of one XMPP account
// (one JID and resource) knock each other off the server, so one process
// at a time drives it.
func (*Publisher) SingleWriter() bool { return true }

var _ sink.SingleWriter = (*Publisher)(nil)
