package sink

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/herald-router/herald/schemas"
)

// script is a provider whose answers are given per event message; it
// records what was durably committed, as a real sink's reader would see.
type script struct {
	answers  map[string]Commit
	errs     map[string]error
	beginErr error
	endErr   error
	pending  []string
	written  []string
	closed   int
}

func (s *script) Begin(context.Context) error { s.pending = nil; return s.beginErr }
func (s *script) Do(_ context.Context, ev *schemas.Event) (Commit, error) {
	if err := s.errs[ev.Message]; err != nil {
		return 0, err
	}
	c, ok := s.answers[ev.Message]
	if !ok {
		c = Deferred
	}
	switch c {
	case Committed:
		s.written = append(s.written, s.pending...)
		s.written = append(s.written, ev.Message)
		s.pending = nil
	case PreviousCommitted:
		s.written = append(s.written, s.pending...)
		s.pending = []string{ev.Message}
	case Deferred:
		s.pending = append(s.pending, ev.Message)
	}
	return c, nil
}
func (s *script) End(context.Context) error {
	if s.endErr != nil {
		return s.endErr
	}
	s.written = append(s.written, s.pending...)
	s.pending = nil
	return nil
}
func (s *script) Close(context.Context) error { s.closed++; return nil }

func events(msgs ...string) []*schemas.Event {
	out := make([]*schemas.Event, len(msgs))
	for i, m := range msgs {
		out[i] = &schemas.Event{Message: m}
	}
	return out
}

func TestTransactCommitsInOrder(t *testing.T) {
	errDown := errors.New("connection refused")
	for _, tc := range []struct {
		name      string
		p         *script
		committed int
		failed    []int
		retryable bool
	}{
		{
			name:      "deferred events are committed by End",
			p:         &script{answers: map[string]Commit{"a": Deferred, "b": Deferred, "c": Deferred}},
			committed: 4,
		},
		{
			name:      "a failed End leaves every deferred event uncommitted",
			p:         &script{answers: map[string]Commit{"a": Deferred, "b": Deferred, "c": Deferred}, endErr: errDown},
			committed: 0, retryable: true,
		},
		{
			name: "committing event k commits every event before it, even when a later one fails",
			p: &script{answers: map[string]Commit{"a": Deferred, "b": Committed, "c": Deferred},
				errs: map[string]error{"d": errDown}},
			committed: 2, retryable: true,
		},
		{
			name: "previous-committed commits the events before this one but not this one",
			p: &script{answers: map[string]Commit{"a": Deferred, "b": Deferred, "c": PreviousCommitted},
				errs: map[string]error{"d": errDown}},
			committed: 2, retryable: true,
		},
		{
			name: "a permanent error names its event and the transaction goes on",
			p: &script{answers: map[string]Commit{"a": Deferred, "c": Deferred, "d": Deferred},
				errs: map[string]error{"b": Permanent("too_big", errors.New("event exceeds 1 MiB"))}},
			committed: 4, failed: []int{1},
		},
		{
			name:      "a failed Begin commits nothing",
			p:         &script{beginErr: errDown},
			committed: 0, retryable: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Transact(context.Background(), tc.p, events("a", "b", "c", "d"))
			if r.Committed != tc.committed {
				t.Errorf("committed = %d, want %d (written %v)", r.Committed, tc.committed, tc.p.written)
			}
			if (r.Err != nil) != tc.retryable {
				t.Errorf("err = %v, want retryable error: %v", r.Err, tc.retryable)
			}
			if r.Err != nil && !errors.Is(r.Err, errDown) {
				t.Errorf("the error must wrap the provider's: %v", r.Err)
			}
			if len(r.Failed) != len(tc.failed) {
				t.Fatalf("failed = %v, want indices %v", r.Failed, tc.failed)
			}
			for _, i := range tc.failed {
				if code, ok := IsPermanent(r.Failed[i]); !ok || code != "too_big" {
					t.Errorf("failed[%d] = %v, want a permanent error with code too_big", i, r.Failed[i])
				}
			}
			// What Transact calls committed must be what the provider
			// actually wrote: that is the contract the acks rely on.
			wrote := 0
			for _, w := range tc.p.written {
				if w != "b" || tc.failed == nil {
					wrote++
				}
			}
			want := r.Committed - len(r.Failed)
			if r.Err != nil && wrote < want {
				t.Errorf("provider wrote %d events, Transact claims %d", wrote, want)
			}
		})
	}
}

func TestPermanentErrorsAreTestedByType(t *testing.T) {
	base := errors.New("bad")
	err := fmt.Errorf("wrapped: %w", Permanent("bad_event", base))
	if code, ok := IsPermanent(err); !ok || code != "bad_event" {
		t.Fatalf("IsPermanent(%v) = %q, %v", err, code, ok)
	}
	if !errors.Is(err, base) {
		t.Error("a permanent error must unwrap to its cause")
	}
	if _, ok := IsPermanent(base); ok {
		t.Error("a plain error is retryable, not permanent")
	}
}

// refuser defers every event and, at End, commits all but the events its
// refusals name by index.
type refuser struct {
	refusals map[int]error
	n        int
	written  []string
	pending  []string
}

func (p *refuser) Begin(context.Context) error { p.n, p.pending = 0, nil; return nil }
func (p *refuser) Do(_ context.Context, ev *schemas.Event) (Commit, error) {
	if _, refused := p.refusals[p.n]; !refused {
		p.pending = append(p.pending, ev.Message)
	}
	p.n++
	return Deferred, nil
}
func (p *refuser) End(context.Context) error {
	p.written = append(p.written, p.pending...)
	if len(p.refusals) > 0 {
		return &RefusedError{Events: p.refusals}
	}
	return nil
}
func (p *refuser) Close(context.Context) error { return nil }

func TestEndCanRefuseSingleEvents(t *testing.T) {
	bad := Permanent("bad_row", errors.New("value too long"))
	for _, tc := range []struct {
		name      string
		refusals  map[int]error
		failed    []int
		retryable bool
	}{
		{"the refused events fail and the rest is committed", map[int]error{1: bad, 3: bad}, []int{1, 3}, false},
		{"a refusal without a permanent error fails the whole transaction", map[int]error{1: errors.New("value too long")}, nil, true},
		{"a refusal of an event not in the transaction fails the whole transaction", map[int]error{4: bad}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Transact(context.Background(), &refuser{refusals: tc.refusals}, events("a", "b", "c", "d"))
			if tc.retryable {
				if r.Err == nil || r.Committed != 0 || len(r.Failed) != 0 {
					t.Fatalf("Transact = %+v, want a retryable error and nothing committed", r)
				}
				return
			}
			if r.Err != nil || r.Committed != 4 || len(r.Failed) != len(tc.failed) {
				t.Fatalf("Transact = %+v, want 4 done of which %v failed", r, tc.failed)
			}
			for _, i := range tc.failed {
				if code, ok := IsPermanent(r.Failed[i]); !ok || code != "bad_row" {
					t.Errorf("failed[%d] = %v, want a permanent error with code bad_row", i, r.Failed[i])
				}
			}
		})
	}
}
