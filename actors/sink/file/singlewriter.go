package file

import "github.com/herald-router/herald/actors/sink"

// SingleWriter implements sink.SingleWriter: two processes appending to one
// file interleave their batches and both reopen it after logrotate, so one
// process at a time writes it (the lease holder).
func (*Writer) SingleWriter() bool { return true }

var _ sink.SingleWriter = (*Writer)(nil)
