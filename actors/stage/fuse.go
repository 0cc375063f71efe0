package stage

import (
	"errors"
	"fmt"
	"strings"

	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/internal/metrics"
	"github.com/herald-router/herald/schemas"
)

// A Link is a stage that runs in the same process right after a Hop's own
// stage. The Hop hands it the outputs it consumes in memory instead of
// publishing them to its stream and reading them back: the hop's input is
// acknowledged only once the last link's outputs are stored, which is the
// guarantee a JetStream hop between them gives, at a fraction of the cost
// (two of the pipeline's four streams stay idle when one process runs every
// stage). Each link keeps its own metrics, dead-letter attribution, batch
// ids and archive copy, so the outputs are those separate stages would have
// made.
type Link struct {
	Name    string
	Proc    Processor
	Metrics *metrics.Stage
	// Mirror, when set, also receives a copy of what this link publishes
	// (the archive of resolved events).
	Mirror string
	// Input is the subject, or the subject prefix when it ends in ".", that
	// this stage's consumer reads.
	Input string
}

func (l *Link) takes(subject string) bool {
	if strings.HasSuffix(l.Input, ".") {
		return strings.HasPrefix(subject, l.Input)
	}
	return subject == l.Input
}

// counted is what one stage published from one input, added to its
// metrics once the outputs are stored.
type counted struct {
	m *metrics.Stage
	n int
}

// fuse runs the outputs of stage `from` (index into links) through the
// links after it. Outputs no later link takes are returned with their full
// Nats-Msg-Id base, the stage that made them and its metrics set.
// input is the subject the stage's batch came from (where a dead letter
// without an origin is redriven to). tap, when set, is shown what is handed
// on before the next stage changes it.
func fuse(links []Link, from int, input, batchID string, outs []Output, counts []counted, tap func(subject, id string, evs []*schemas.Event)) ([]Output, []counted, error) {
	l := &links[from]
	var final []Output
	published := 0
	for _, o := range outs {
		o.id = batchID + ":" + l.Name + ":" + o.Key
		o.stage, o.metrics = l.Name, l.Metrics
		if o.DeadLetter != nil && o.DeadLetter.Origin == "" {
			dl := *o.DeadLetter
			dl.Origin = input
			o.DeadLetter = &dl
		}
		if o.Msgs == nil {
			published += o.events()
		}
		if l.Mirror != "" && o.Msgs == nil && o.DeadLetter == nil {
			final = append(final, Output{Key: o.Key, Subject: l.Mirror, Events: o.Events, Encoded: o.Encoded,
				Data: o.Data, Count: o.Count, id: o.id + ":mirror", stage: l.Name, metrics: l.Metrics, mirror: true})
		}
		if from+1 >= len(links) || o.Msgs != nil || o.DeadLetter != nil || !links[from+1].takes(o.Subject) {
			final = append(final, o)
			continue
		}
		next := &links[from+1]
		evs, err := o.decoded()
		if err != nil {
			return nil, nil, err
		}
		if tap != nil {
			tap(o.Subject, o.id, evs)
		}
		next.Metrics.Received.Add(float64(len(evs)))
		next.Metrics.BatchSize.Observe(float64(len(evs)))
		nouts, err := next.Proc.Process(&schemas.Batch{Id: o.id, Events: evs})
		if errors.Is(err, bus.ErrMalformed) {
			// What the next stage would have dead-lettered as its input.
			final = append(final, Output{Key: o.Key, Subject: bus.DLQSubject(next.Name), Events: evs,
				DeadLetter: &DeadLetter{Reason: "malformed", Detail: err.Error(), Origin: o.Subject},
				id:         o.id + ":" + next.Name + ":malformed", stage: next.Name, metrics: next.Metrics})
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", next.Name, err)
		}
		more, c, err := fuse(links, from+1, o.Subject, o.id, nouts, nil, tap)
		if err != nil {
			return nil, nil, err
		}
		final = append(final, more...)
		counts = append(counts, c...)
	}
	return final, append(counts, counted{l.Metrics, published}), nil
}

// decoded returns the output's events as structs, decoding them when a
// wire processor made them.
func (o *Output) decoded() ([]*schemas.Event, error) {
	switch {
	case o.Events != nil:
		return o.Events, nil
	case o.Encoded != nil:
		evs := make([]*schemas.Event, len(o.Encoded))
		for i, b := range o.Encoded {
			evs[i] = &schemas.Event{}
			if err := evs[i].UnmarshalVT(b); err != nil {
				return nil, fmt.Errorf("%w: event %d: %v", bus.ErrMalformed, i, err)
			}
		}
		return evs, nil
	case o.Data != nil:
		var b schemas.Batch
		if err := b.UnmarshalVT(o.Data); err != nil {
			return nil, fmt.Errorf("%w: batch: %v", bus.ErrMalformed, err)
		}
		return b.Events, nil
	}
	return nil, nil
}
