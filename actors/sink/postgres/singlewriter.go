package postgres

import "github.com/herald-router/herald/actors/sink"

// SingleWriter implements sink.SingleWriter: PostgreSQL takes concurrent
// writers, and rows are idempotent by event id.
func (*Writer) SingleWriter() bool { return false }

var _ sink.SingleWriter = (*Writer)(nil)
