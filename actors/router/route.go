// Package router is the stage that sends each event to every target that
// wants it, one copy per target, each onto the target's own subject so that
// a slow target never holds up another. A target wants an event when its
// bit is in the event's target mask and its filter, if any, is true. Rules
// set the mask of records from receivers by their attributes first.
package router

import (
	"fmt"
	"sort"

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
// its mask. failed holds the targets whose filter could not judge the event
// (the copy for that target is dead-lettered; the others go on). An error
// means a rule could not judge it, so its mask, and every target, is
// unknown.
func (r *Router) Match(ev *schemas.Event) (names []string, failed map[string]error, err error) {
	if err := r.applyRules(ev); err != nil {
		return nil, nil, err
	}
	for _, t := range r.targets {
		if ev.TargetMask&t.Bit == 0 {
			continue
		}
		if t.filter != nil {
			ok, err := t.filter.Match(ev)
			if err != nil {
				if failed == nil {
					failed = map[string]error{}
				}
				failed[t.Name] = err
				continue
			}
			if !ok {
				continue
			}
		}
		names = append(names, t.Name)
	}
	return names, failed, nil
}

// deadLetters collects events the router gives up on, by origin subject.
type deadLetters struct {
	events map[string][]*schemas.Event
	detail map[string]string
	order  []string
}

func (d *deadLetters) add(origin string, ev *schemas.Event, err error) {
	if d.events == nil {
		d.events, d.detail = map[string][]*schemas.Event{}, map[string]string{}
	}
	if _, ok := d.events[origin]; !ok {
		d.order = append(d.order, origin)
		d.detail[origin] = err.Error()
	}
	d.events[origin] = append(d.events[origin], ev)
}

// Process implements stage.Processor: one output per target that gets any
// event of the batch, dead-letter outputs for the copies a filter could not
// judge (origin: that target's subject, so a redrive writes them there) and
// for the events a rule could not judge (origin: the router's input), and
// the receipts of tracked events.
func (r *Router) Process(b *schemas.Batch) ([]stage.Output, error) {
	byTarget := map[string][]*schemas.Event{}
	var dead deadLetters
	var receipts bus.Receipts
	unrouted := 0
	for _, ev := range b.Events {
		names, failed, err := r.Match(ev)
		if err != nil {
			dead.add(bus.SubjectResolved, ev, err)
			if bus.Tracked(ev) {
				receipts.Add(ev, &schemas.Receipt{Kind: schemas.Receipt_FAILED, Target: "router", Reason: "filter_error"})
			}
			continue
		}
		routed := names
		for _, t := range r.targets {
			if ferr, ok := failed[t.Name]; ok {
				dead.add(bus.TargetSubject(t.Name), ev, fmt.Errorf("target %s: %w", t.Name, ferr))
				routed = append(routed, t.Name)
			}
		}
		if bus.Tracked(ev) {
			// The client learns how many copies to wait for (none: done);
			// a copy a filter could not judge is reported failed at once.
			receipts.Add(ev, &schemas.Receipt{Kind: schemas.Receipt_ROUTED, Targets: routed})
			for _, t := range r.targets {
				if _, ok := failed[t.Name]; ok {
					receipts.Add(ev, &schemas.Receipt{Kind: schemas.Receipt_FAILED, Target: t.Name, Reason: "filter_error"})
				}
			}
		}
		if len(routed) == 0 {
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
	for i, origin := range dead.order {
		outs = append(outs, stage.Output{Key: fmt.Sprintf("dlq%d", i), Subject: bus.DLQSubject("router"), Events: dead.events[origin],
			DeadLetter: &stage.DeadLetter{Reason: "filter_error", Detail: dead.detail[origin], Origin: origin}})
	}
	if receipts.Len() > 0 {
		// One message per receipt subject for the whole batch, its id
		// derived from the batch's (stable across redeliveries).
		outs = append(outs, stage.Output{Key: "receipts", Msgs: receipts.Msgs(b.Id, "router")})
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
