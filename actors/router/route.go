// Package router is the stage that sends each event to every target that
// wants it, one copy per target, each onto the target's own subject so that
// a slow target never holds up another. A target wants an event when its
// bit is in the event's target mask and its filter, if any, is true. Rules
// set the mask of records from receivers by their attributes first.
package router

import (
	"fmt"
	"sort"

	"github.com/nats-io/nats.go"

	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/actors/stage"
	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/internal/filter"
	"github.com/herald-router/herald/schemas"
)

// Target is a routing destination.
type Target struct {
	Name string
	Bit  uint64
	// Filter is an expression that must also hold (internal/filter); empty
	// for none.
	Filter string
}

// Rule sets the mask of records from receivers (see config.Rule).
type Rule struct {
	When     string
	Receiver string
	Mask     uint64
	Add      bool
}

type target struct {
	Target
	filter *filter.Program
}

type rule struct {
	Rule
	when *filter.Program
}

// Router matches events against targets.
type Router struct {
	targets []target
	rules   []rule
	// Unrouted is called with the number of events of a batch that no
	// target wanted (they are counted, not silently dropped).
	Unrouted func(n int)
}

// New returns a router over targets (matched in name order) and rules
// (tried in order). The expressions are compiled here; config.Load has
// already type-checked them.
func New(targets []Target, rules []Rule) (*Router, error) {
	r := &Router{}
	for _, t := range targets {
		rt := target{Target: t}
		if t.Filter != "" {
			p, err := filter.Compile(t.Filter)
			if err != nil {
				return nil, fmt.Errorf("target %s: filter: %w", t.Name, err)
			}
			rt.filter = p
		}
		r.targets = append(r.targets, rt)
	}
	sort.Slice(r.targets, func(i, j int) bool { return r.targets[i].Name < r.targets[j].Name })
	for i, ru := range rules {
		p, err := filter.Compile(ru.When)
		if err != nil {
			return nil, fmt.Errorf("rule %d: %w", i, err)
		}
		r.rules = append(r.rules, rule{Rule: ru, when: p})
	}
	return r, nil
}

// applyRules sets ev's mask from the first rule that matches. Events from
// applications (source "nats") keep their own mask.
func (r *Router) applyRules(ev *schemas.Event) error {
	if ev.Source == bus.SourceNATS {
		return nil
	}
	for _, ru := range r.rules {
		if ru.Receiver != "" && ru.Receiver != ev.Source {
			continue
		}
		ok, err := ru.when.Match(ev)
		if err != nil {
			return err
		}
		if ok {
			if ru.Add {
				ev.TargetMask |= ru.Mask
			} else {
				ev.TargetMask = ru.Mask
			}
			return nil
		}
	}
	return nil
}

// Match returns the names of the targets ev goes to, after the rules set
// its mask. An error means a rule or filter could not judge the event.
func (r *Router) Match(ev *schemas.Event) ([]string, error) {
	if err := r.applyRules(ev); err != nil {
		return nil, err
	}
	var out []string
	for _, t := range r.targets {
		if ev.TargetMask&t.Bit == 0 {
			continue
		}
		if t.filter != nil {
			ok, err := t.filter.Match(ev)
			if err != nil {
				return nil, fmt.Errorf("target %s: %w", t.Name, err)
			}
			if !ok {
				continue
			}
		}
		out = append(out, t.Name)
	}
	return out, nil
}

// Process implements stage.Processor: one output per target that gets any
// event of the batch, and a dead-letter output for events a rule or filter
// could not judge.
func (r *Router) Process(b *schemas.Batch) ([]stage.Output, error) {
	byTarget := map[string][]*schemas.Event{}
	var failed []*schemas.Event
	var receipts []*nats.Msg
	var detail string
	unrouted := 0
	for _, ev := range b.Events {
		names, err := r.Match(ev)
		if err != nil {
			failed = append(failed, ev)
			if detail == "" {
				detail = err.Error()
			}
			if bus.Tracked(ev) {
				receipts = append(receipts, bus.ReceiptMsg(ev, &schemas.Receipt{Kind: schemas.Receipt_FAILED,
					Target: "router", Reason: "filter_error"}))
			}
			continue
		}
		if bus.Tracked(ev) {
			// The client learns how many copies to wait for (none: done).
			receipts = append(receipts, bus.ReceiptMsg(ev, &schemas.Receipt{Kind: schemas.Receipt_ROUTED, Targets: names}))
		}
		if len(names) == 0 {
			unrouted++
		}
		for _, n := range names {
			byTarget[n] = append(byTarget[n], ev)
		}
	}
	var outs []stage.Output
	for _, t := range r.targets {
		if evs := byTarget[t.Name]; len(evs) > 0 {
			outs = append(outs, stage.Output{Key: t.Name, Subject: bus.TargetSubject(t.Name), Events: evs})
		}
	}
	if len(failed) > 0 {
		outs = append(outs, stage.Output{Key: "dlq", Subject: bus.DLQSubject("router"), Events: failed,
			DeadLetter: &stage.DeadLetter{Reason: "filter_error", Detail: detail}})
	}
	if len(receipts) > 0 {
		outs = append(outs, stage.Output{Key: "receipts", Msgs: receipts})
	}
	if unrouted > 0 && r.Unrouted != nil {
		r.Unrouted(unrouted)
	}
	return outs, nil
}

// discardUnknown skips every field of an event but its mask.
var discardUnknown = proto.UnmarshalOptions{DiscardUnknown: true}

// ProcessWire implements stage.WireProcessor: when there are no rules or
// filters and every event of the batch goes to the same targets, the batch
// is passed on as it is.
func (r *Router) ProcessWire(data []byte) (string, []stage.Output, bool) {
	if len(r.rules) > 0 {
		return "", nil, false
	}
	for _, t := range r.targets {
		if t.filter != nil {
			return "", nil, false
		}
	}
	var view schemas.RoutingBatch
	if err := discardUnknown.Unmarshal(data, &view); err != nil || len(view.Events) == 0 {
		return "", nil, false
	}
	mask := view.Events[0].TargetMask
	for _, ev := range view.Events {
		if ev.TargetMask != mask || ev.Track != "" {
			return "", nil, false // mixed masks, or receipts to send: decode
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
