package stdout

import "github.com/herald-router/herald/actors/sink"

// SingleWriter implements sink.SingleWriter: a supervisor collects herald's
// standard output as one stream per service (a systemd unit, a pod), so
// one process at a time writes a target's events there, in order.
func (*Writer) SingleWriter() bool { return true }

var _ sink.SingleWriter = (*Writer)(nil)
