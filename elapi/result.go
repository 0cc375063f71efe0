package elapi

import (
	"fmt"
	"strings"
)

// Mask selects targets: each bit is a target's `bit` in herald's config.
type Mask uint64

// The conventional targets; a config may define others with their bits.
const (
	MaskDebug Mask = 1
	MaskAudit Mask = 2
	MaskLog   Mask = 4
)

// Flags choose the moments a LogAsync callback runs; a Notice's Moment is
// one of them.
type Flags uint8

const (
	// OnAccepted: JetStream stored the event; herald will not lose it.
	OnAccepted Flags = 1 << iota
	// OnTargetDone: one target committed the event or gave up on it
	// (Notice.Target). Asking for it tracks the event.
	OnTargetDone
	// OnDone: every target the event was routed to is done
	// (Notice.Result). Asking for it tracks the event.
	OnDone
)

func (f Flags) String() string {
	var parts []string
	for _, x := range []struct {
		f    Flags
		name string
	}{{OnAccepted, "accepted"}, {OnTargetDone, "target done"}, {OnDone, "done"}} {
		if f&x.f != 0 {
			parts = append(parts, x.name)
		}
	}
	return strings.Join(parts, "|")
}

// Notice is what a callback receives.
type Notice struct {
	// ID is the event's id, as LogAsync returned it.
	ID string
	// Moment is OnAccepted, OnTargetDone or OnDone.
	Moment Flags
	// Target is the target that finished, at OnTargetDone.
	Target TargetResult
	// Result lists every target, at OnDone.
	Result *Result
	// Err is set when the event will go no further: it could not be
	// stored (the dispatcher closed first: ErrClosed). The callback then
	// runs once with Moment OnDone, whatever the flags.
	Err error
}

// Outcome is how a target finished with its copy of an event.
type Outcome uint8

const (
	// Committed: a sink of the target's chain wrote the copy.
	Committed Outcome = iota + 1
	// Failed: the copy was dead-lettered (Reason); it will not be written.
	Failed
)

func (o Outcome) String() string {
	switch o {
	case Committed:
		return "committed"
	case Failed:
		return "failed"
	}
	return "unknown"
}

// RouterTarget is the Target of the outcome of an event herald's router
// could not route (a filter that failed on it): the event went to no
// target.
const RouterTarget = "router"

// TargetResult is one target's outcome.
type TargetResult struct {
	Target  string
	Outcome Outcome
	// Sink is the sink that committed the copy (or that refused it).
	Sink string
	// Reason is the dead-letter code of a failed copy (too_long,
	// sink_panic, ...).
	Reason string
}

func (t TargetResult) String() string {
	if t.Outcome == Failed {
		s := t.Target + ": failed"
		if t.Sink != "" {
			s += " in " + t.Sink
		}
		return s + " (" + t.Reason + ")"
	}
	return t.Target + ": committed by " + t.Sink
}

// Result is what became of a logged event.
type Result struct {
	ID string
	// Accepted: JetStream stored the event.
	Accepted bool
	// Tracked: Targets is complete, every target herald routed the event
	// to is in it. An event routed to no target has none.
	Tracked bool
	Targets []TargetResult
}

// Failed returns the targets that gave up on the event.
func (r *Result) Failed() []TargetResult {
	var out []TargetResult
	for _, t := range r.Targets {
		if t.Outcome == Failed {
			out = append(out, t)
		}
	}
	return out
}

// Err is nil when no target failed, else an error wrapping
// ErrTargetFailed that names each failed target and its reason.
func (r *Result) Err() error {
	f := r.Failed()
	if len(f) == 0 {
		return nil
	}
	parts := make([]string, len(f))
	for i, t := range f {
		parts[i] = t.String()
	}
	return fmt.Errorf("event %s: %w: %s", r.ID, ErrTargetFailed, strings.Join(parts, "; "))
}
