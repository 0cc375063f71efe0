package natssink

import "github.com/herald-router/herald/actors/sink"

// SingleWriter implements sink.SingleWriter: a NATS subject takes
// any number of publishers.
func (*Publisher) SingleWriter() bool { return false }

var _ sink.SingleWriter = (*Publisher)(nil)
