// Package router is the stage that sends each event to every target whose
// bit is set in the event's target mask, one copy per target, each onto the
// target's own subject so that a slow target never holds up another.
package router

import (
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/actors/stage"
	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/schemas"
)

// Target is a routing destination.
type Target struct {
	Name string
	Bit  uint64
}

// Router matches events against targets.
type Router struct {
	targets []Target
	// Unrouted is called with the number of events of a batch that no
	// target wanted (they are counted, not silently dropped).
	Unrouted func(n int)
}

// New returns a router over targets, matched in name order.
func New(targets []Target) *Router {
	ts := append([]Target(nil), targets...)
	sort.Slice(ts, func(i, j int) bool { return ts[i].Name < ts[j].Name })
	return &Router{targets: ts}
}

// Match returns the names of the targets ev goes to.
func (r *Router) Match(ev *schemas.Event) []string {
	var out []string
	for _, t := range r.targets {
		if ev.TargetMask&t.Bit != 0 {
			out = append(out, t.Name)
		}
	}
	return out
}

// Process implements stage.Processor: one output per target that gets any
// event of the batch.
func (r *Router) Process(b *schemas.Batch) ([]stage.Output, error) {
	var outs []stage.Output
	routed := make([]bool, len(b.Events))
	for _, t := range r.targets {
		var evs []*schemas.Event
		for i, ev := range b.Events {
			if ev.TargetMask&t.Bit != 0 {
				evs = append(evs, ev)
				routed[i] = true
			}
		}
		if len(evs) > 0 {
			outs = append(outs, stage.Output{Key: t.Name, Subject: bus.TargetSubject(t.Name), Events: evs})
		}
	}
	n := 0
	for _, ok := range routed {
		if !ok {
			n++
		}
	}
	if n > 0 && r.Unrouted != nil {
		r.Unrouted(n)
	}
	return outs, nil
}

// discardUnknown skips every field of an event but its mask.
var discardUnknown = proto.UnmarshalOptions{DiscardUnknown: true}

// ProcessWire implements stage.WireProcessor: when every event of the batch
// goes to the same targets, the batch is passed on as it is.
func (r *Router) ProcessWire(data []byte) (string, []stage.Output, bool) {
	var view schemas.RoutingBatch
	if err := discardUnknown.Unmarshal(data, &view); err != nil || len(view.Events) == 0 {
		return "", nil, false
	}
	mask := view.Events[0].TargetMask
	for _, ev := range view.Events[1:] {
		if ev.TargetMask != mask {
			return "", nil, false
		}
	}
	var outs []stage.Output
	for _, t := range r.targets {
		if mask&t.Bit != 0 {
			outs = append(outs, stage.Output{Key: t.Name, Subject: bus.TargetSubject(t.Name), Data: data, Count: len(view.Events)})
		}
	}
	if len(outs) == 0 {
		return "", nil, false // let Process count the unrouted events
	}
	return view.Id, outs, true
}

var (
	_ stage.Processor     = (*Router)(nil)
	_ stage.WireProcessor = (*Router)(nil)
)
