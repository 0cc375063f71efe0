package classifier

import (
	"time"

	"github.com/herald-router/herald/actors/stage"
	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/schemas"
)

// Processor classifies every raw record of a batch and groups the events by
// class, one output per class, in order of first appearance.
type Processor struct{}

// Process implements stage.Processor.
func (Processor) Process(b *schemas.Batch) ([]stage.Output, error) {
	var outs []stage.Output
	index := map[string]int{}
	for _, ev := range b.Events {
		now := time.Unix(0, ev.ReceivedUnixNano)
		if ev.ReceivedUnixNano == 0 { // not stamped at intake: year inference needs a real now
			now = time.Now()
		}
		Classify(ev, now)
		i, ok := index[ev.Class]
		if !ok {
			i = len(outs)
			index[ev.Class] = i
			outs = append(outs, stage.Output{Key: ev.Class, Subject: bus.EventsSubject(ev.Class)})
		}
		outs[i].Events = append(outs[i].Events, ev)
	}
	return outs, nil
}

var _ stage.Processor = Processor{}
