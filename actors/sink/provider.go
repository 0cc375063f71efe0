package sink

import (
	"context"
	"errors"
	"fmt"

	"github.com/herald-router/herald/schemas"
)

// Commit is what Do says about the event it was given.
type Commit int

const (
	// Committed: this event and every earlier one of the transaction are
	// durably written.
	Committed Commit = iota
	// Deferred: written to a buffer; committed by End or a later commit.
	Deferred
	// PreviousCommitted: every earlier event is committed, this one is not
	// yet (it is deferred).
	PreviousCommitted
)

func (c Commit) String() string {
	switch c {
	case Committed:
		return "committed"
	case Deferred:
		return "deferred"
	case PreviousCommitted:
		return "previous-committed"
	}
	return fmt.Sprintf("Commit(%d)", int(c))
}

// A Provider writes events somewhere.
//
// The driver never calls one instance concurrently. A transaction is Begin,
// then Do for each event in order, then End; commits are in order, so
// committing event k commits everything before it. An error from Begin, Do
// or End aborts the transaction: what was not committed goes back to the
// bus and is delivered again. Errors are retryable (the sink cannot work
// now: it is suspended and retried with back-off) unless wrapped with
// Permanent, which says this one event can never be written: it is
// dead-lettered with the error's code and the transaction goes on.
// A provider that learns only at End that some events can never be
// written (a database refusing some rows of a batch) commits the others
// and answers a *RefusedError naming those events.
//
// The ctx given to each call bounds that call. Close releases everything;
// it must be safe to call more than once and after a failed Begin.
type Provider interface {
	Begin(ctx context.Context) error
	Do(ctx context.Context, ev *schemas.Event) (Commit, error)
	End(ctx context.Context) error
	Close(ctx context.Context) error
}

// PermanentError says that one event can never be written by this sink.
type PermanentError struct {
	// Code is a stable reason code operators can filter dead letters on.
	Code string
	Err  error
}

func (e *PermanentError) Error() string { return e.Code + ": " + e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent marks err as permanent for the event at hand, with a stable
// reason code.
func Permanent(code string, err error) error { return &PermanentError{Code: code, Err: err} }

// IsPermanent reports whether err is permanent for its event, and its code.
func IsPermanent(err error) (string, bool) {
	var pe *PermanentError
	if errors.As(err, &pe) {
		return pe.Code, true
	}
	return "", false
}

// RefusedError is End's answer when the transaction is committed except
// for some events that can never be written. Each is dead-lettered with
// its own permanent error, as if Do had answered it.
type RefusedError struct {
	// Events maps an event's index in the transaction (the count of Do
	// calls before it) to its error, which Permanent made.
	Events map[int]error
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("%d events refused, the rest committed", len(e.Events))
}

// Result is the outcome of one transaction.
type Result struct {
	// Committed is how many leading events are done: written, or failed
	// permanently (see Failed).
	Committed int
	// Failed holds the events that failed permanently, by index; they are
	// dead-lettered, never retried.
	Failed map[int]error
	// Err is the retryable error that aborted the transaction, or nil.
	Err error
}

// Transact runs one transaction of events through p.
func Transact(ctx context.Context, p Provider, events []*schemas.Event) Result {
	r := Result{}
	if err := p.Begin(ctx); err != nil {
		r.Err = fmt.Errorf("begin: %w", err)
		return r
	}
	for i, ev := range events {
		c, err := p.Do(ctx, ev)
		if err != nil {
			if _, ok := IsPermanent(err); ok {
				if r.Failed == nil {
					r.Failed = map[int]error{}
				}
				r.Failed[i] = err
				continue
			}
			r.Err = fmt.Errorf("event %d: %w", i, err)
			return r
		}
		switch c {
		case Committed:
			r.Committed = i + 1
		case PreviousCommitted:
			r.Committed = max(r.Committed, i)
		case Deferred:
		default:
			r.Err = fmt.Errorf("event %d: provider answered %v", i, c)
			return r
		}
	}
	if err := p.End(ctx); err != nil {
		if err := r.refused(err, len(events)); err != nil {
			r.Err = fmt.Errorf("end: %w", err)
			return r
		}
	}
	r.Committed = len(events)
	return r
}

// refused adds the events an End's *RefusedError names to r.Failed. It
// returns err when End failed as a whole, or when the refusals are not
// what the contract says (then nothing is taken as committed: a
// redelivery may repeat writes, never lose them).
func (r *Result) refused(err error, n int) error {
	re, ok := errors.AsType[*RefusedError](err)
	if !ok {
		return err
	}
	for i, ferr := range re.Events {
		if i < 0 || i >= n {
			return fmt.Errorf("provider refused event %d of a transaction of %d: %w", i, n, ferr)
		}
		if _, permanent := IsPermanent(ferr); !permanent {
			return fmt.Errorf("provider refused event %d without a permanent error: %w", i, ferr)
		}
	}
	if r.Failed == nil {
		r.Failed = map[int]error{}
	}
	for i, ferr := range re.Events {
		r.Failed[i] = ferr
	}
	return nil
}
