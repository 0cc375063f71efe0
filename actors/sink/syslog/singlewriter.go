package syslog

import "github.com/herald-router/herald/actors/sink"

// SingleWriter implements sink.SingleWriter: a syslog collector takes any
// number of connections.
func (*Writer) SingleWriter() bool { return false }

var _ sink.SingleWriter = (*Writer)(nil)
