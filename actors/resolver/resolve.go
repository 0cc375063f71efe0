// Package resolver is the stage that makes an event final: it gives each
// event its id (unique, sortable, and the same if the event is processed
// again after a crash) and its resolved R_ attributes, once, so every sink
// sees the same values.
package resolver

import (
	"time"

	"github.com/herald-router/herald/actors/stage"
	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/internal/ids"
	"github.com/herald-router/herald/schemas"
)

// Field names the resolver adds.
const (
	// FieldTime is R_time__: the event's time in UTC seconds (its own time
	// when the record carries one, else the arrival time).
	FieldTime = "R_time__"
)

// Resolve assigns ev its id, unless the intake gave one, and its resolved
// attributes. batchID and index make the id deterministic.
func Resolve(ev *schemas.Event, batchID string, index int) {
	received := time.Unix(0, ev.ReceivedUnixNano)
	if ev.Id == "" {
		ev.Id = ids.Derived(received, batchID, index)
	}
	t := ev.TimeUnixNano
	if t == 0 {
		t = ev.ReceivedUnixNano
	}
	for _, f := range ev.Fields {
		if f.Key == FieldTime { // resolved already (a replayed event): keep it
			return
		}
	}
	ev.Fields = append(ev.Fields, &schemas.Field{Key: FieldTime,
		Value: &schemas.Value{Kind: &schemas.Value_Int{Int: t / int64(time.Second)}}})
}

// Processor resolves every event of a batch and sends it on to the router.
type Processor struct{}

// Process implements stage.Processor.
func (Processor) Process(b *schemas.Batch) ([]stage.Output, error) {
	for i, ev := range b.Events {
		Resolve(ev, b.Id, i)
	}
	return []stage.Output{{Key: "resolved", Subject: bus.SubjectResolved, Events: b.Events}}, nil
}

var _ stage.Processor = Processor{}
