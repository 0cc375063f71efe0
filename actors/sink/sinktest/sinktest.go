// Package sinktest is the conformance suite every sink provider passes. A
// provider's test gives a Harness (how to make the provider, how to read
// back what it durably wrote, how to make its destination fail) and calls
// Run; each case states the rule of the sink contract it checks.
package sinktest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/herald-router/herald/actors/sink"
	"github.com/herald-router/herald/schemas"
)

// Record is what a destination holds of one event: enough to tell which
// event it was and whether its text survived.
type Record struct {
	ID      string
	Message string
}

// Harness describes the provider under test.
type Harness struct {
	// New returns a provider writing to a fresh, empty destination of the
	// test's own (t.TempDir(), a new table, a new listener...).
	New func(t *testing.T) sink.Provider
	// ReadBack returns every record the destination of the most recent New
	// durably holds, in the order written. It may wait briefly for a
	// remote destination to settle.
	ReadBack func(t *testing.T) []Record
	// Break makes the destination fail as a real outage would (a stopped
	// server, a full disk) and returns the function that mends it. A
	// provider whose destination cannot fail (stdout) sets CannotFail and
	// says why instead.
	Break      func(t *testing.T) (mend func())
	CannotFail string
	// Lossy is set for destinations that may legitimately lose text in
	// transit (for example a syslog format that cannot carry newlines);
	// then hostile messages are checked for presence by id only.
	Lossy bool
}

// Event makes a test event.
func Event(i int, msg string) *schemas.Event {
	return &schemas.Event{
		Id:               fmt.Sprintf("01TEST%020d", i),
		Message:          msg,
		Host:             "host-1",
		Service:          "svc",
		Class:            "rfc5424",
		Certainty:        1,
		Source:           "sinktest",
		ReceivedUnixNano: time.Date(2026, 11, 26, 6, 0, 0, i, time.UTC).UnixNano(),
		TimeUnixNano:     time.Date(2026, 11, 26, 5, 59, 59, 0, time.UTC).UnixNano(),
		Fields: []*schemas.Field{
			{Key: "seq", Value: &schemas.Value{Kind: &schemas.Value_Int{Int: int64(i)}}},
			{Key: "ok", Value: &schemas.Value{Kind: &schemas.Value_Bool{Bool: true}}},
		},
	}
}

func events(from, n int) []*schemas.Event {
	out := make([]*schemas.Event, n)
	for i := range out {
		out[i] = Event(from+i, fmt.Sprintf("event %d", from+i))
	}
	return out
}

func ids(rs []Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

// recorder wraps a provider and checks, after every answer, that what the
// provider claims committed is really readable at the destination.
type recorder struct {
	sink.Provider
	t        *testing.T
	h        Harness
	events   []*schemas.Event
	answers  []sink.Commit
	violated []string
}

func (r *recorder) Do(ctx context.Context, ev *schemas.Event) (sink.Commit, error) {
	c, err := r.Provider.Do(ctx, ev)
	if err != nil {
		return c, err
	}
	r.events = append(r.events, ev)
	r.answers = append(r.answers, c)
	committed := -1
	switch c {
	case sink.Committed:
		committed = len(r.events)
	case sink.PreviousCommitted:
		committed = len(r.events) - 1
	}
	if committed >= 0 {
		got := r.h.ReadBack(r.t)
		if len(got) < committed {
			r.violated = append(r.violated, fmt.Sprintf("after %v for event %d the destination holds %d events, want %d", c, len(r.events)-1, len(got), committed))
		}
	}
	return c, nil
}

// Run runs every case of the suite against h.
func Run(t *testing.T, h Harness) {
	t.Helper()
	ctx := func(t *testing.T) context.Context {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		t.Cleanup(cancel)
		return c
	}

	t.Run("a transaction's events are all there after End, in order, exactly once", func(t *testing.T) {
		p := h.New(t)
		defer p.Close(context.Background())
		in := events(0, 50)
		r := sink.Transact(ctx(t), p, in)
		if r.Err != nil || r.Committed != len(in) || len(r.Failed) != 0 {
			t.Fatalf("Transact = %+v", r)
		}
		got := h.ReadBack(t)
		if strings.Join(ids(got), ",") != strings.Join(ids(records(in)), ",") {
			t.Fatalf("destination holds %v, want %v", ids(got), ids(records(in)))
		}
		for i, g := range got {
			if g.Message != in[i].Message {
				t.Errorf("event %d message = %q, want %q", i, g.Message, in[i].Message)
			}
		}
	})

	t.Run("what Do calls committed is readable at once, and later transactions append", func(t *testing.T) {
		p := h.New(t)
		defer p.Close(context.Background())
		rec := &recorder{Provider: p, t: t, h: h}
		for round := range 3 {
			in := events(round*10, 10)
			if r := sink.Transact(ctx(t), rec, in); r.Err != nil || r.Committed != len(in) {
				t.Fatalf("round %d: Transact = %+v", round, r)
			}
		}
		for _, v := range rec.violated {
			t.Error(v)
		}
		for i, c := range rec.answers {
			if c != sink.Committed && c != sink.Deferred && c != sink.PreviousCommitted {
				t.Errorf("event %d: Do answered %v", i, c)
			}
		}
		if got := h.ReadBack(t); len(got) != 30 {
			t.Errorf("destination holds %d events after three transactions of 10, want 30", len(got))
		}
	})

	t.Run("an empty transaction writes nothing and breaks nothing", func(t *testing.T) {
		p := h.New(t)
		defer p.Close(context.Background())
		if r := sink.Transact(ctx(t), p, nil); r.Err != nil {
			t.Fatalf("empty transaction: %v", r.Err)
		}
		if r := sink.Transact(ctx(t), p, events(0, 2)); r.Err != nil || len(h.ReadBack(t)) != 2 {
			t.Fatalf("after an empty transaction: %+v, %d held", r, len(h.ReadBack(t)))
		}
	})

	t.Run("hostile content is written intact or refused as permanent, never retried and never harms others", func(t *testing.T) {
		p := h.New(t)
		defer p.Close(context.Background())
		hostile := []string{
			`<xml attr="1">&amp; </body></message> ' " \ `,
			"line one\nline two\r\nthree\ttab",
			"nul \x00 bell \x07 escape \x1b[31m",
			"not utf-8 \xff\xfe end",
			"emoji 🦜 and U+2028 \u2028 and BOM \ufeff",
			`, ; "quoted, with comma" | pipe`,
			"%(key) %s %d %n {{.x}} ${HOME}",
			strings.Repeat("big ", 1<<18), // a 1 MiB message
		}
		var in []*schemas.Event
		for i, m := range hostile {
			in = append(in, Event(i, m))
		}
		in = append(in, events(100, 3)...)
		in[0].Fields = append(in[0].Fields, &schemas.Field{Key: "<weird key=\"x\">", Value: &schemas.Value{Kind: &schemas.Value_Bytes{Bytes: []byte{0, 0xff}}}})
		r := sink.Transact(ctx(t), p, in)
		if r.Err != nil {
			t.Fatalf("hostile content must not be a retryable error (it would be retried for ever): %v", r.Err)
		}
		got := map[string]Record{}
		for _, g := range h.ReadBack(t) {
			got[g.ID] = g
		}
		for i, ev := range in {
			if err, failed := r.Failed[i]; failed {
				if _, ok := sink.IsPermanent(err); !ok {
					t.Errorf("event %d failed without a permanent error: %v", i, err)
				}
				continue
			}
			g, ok := got[ev.Id]
			if !ok {
				t.Errorf("event %d (%.40q) neither written nor refused", i, ev.Message)
				continue
			}
			if !h.Lossy && g.Message != ev.Message && g.Message != strings.ToValidUTF8(ev.Message, "\ufffd") && g.Message != perByte(ev.Message) {
				t.Errorf("event %d: message came back as %.80q, want %.80q", i, g.Message, ev.Message)
			}
		}
		for _, ev := range in[len(hostile):] {
			if _, ok := got[ev.Id]; !ok {
				t.Errorf("ordinary event %s after the hostile ones is missing", ev.Id)
			}
		}
	})

	t.Run("a failing destination is a retryable error, and nothing committed is lost", func(t *testing.T) {
		if h.Break == nil {
			if h.CannotFail == "" {
				t.Fatal("the harness must give Break, or say in CannotFail why the destination cannot fail")
			}
			t.Logf("not applicable: %s", h.CannotFail)
			return
		}
		p := h.New(t)
		defer p.Close(context.Background())
		if r := sink.Transact(ctx(t), p, events(0, 5)); r.Err != nil {
			t.Fatal(r.Err)
		}
		mend := h.Break(t)
		r := sink.Transact(ctx(t), p, events(5, 5))
		if r.Err == nil {
			mend()
			t.Fatal("a transaction against a broken destination must fail")
		}
		if _, permanent := sink.IsPermanent(r.Err); permanent {
			t.Errorf("an outage is retryable, got a permanent error: %v", r.Err)
		}
		mend()
		// The driver hands the uncommitted tail back; here we retry it as
		// the redelivery would, until the destination has recovered.
		deadline := time.Now().Add(20 * time.Second)
		tail := events(5, 5)[r.Committed:]
		for {
			rr := sink.Transact(ctx(t), p, tail)
			if rr.Err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the provider did not recover after the destination was mended: %v", rr.Err)
			}
			tail = tail[rr.Committed:]
			time.Sleep(100 * time.Millisecond)
		}
		seen := map[string]int{}
		for _, g := range h.ReadBack(t) {
			seen[g.ID]++
		}
		for _, ev := range events(0, 10) {
			if seen[ev.Id] == 0 {
				t.Errorf("%s lost across the outage", ev.Id)
			}
		}
	})

	t.Run("Close is idempotent, works without Begin and respects its context", func(t *testing.T) {
		p := h.New(t)
		c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		start := time.Now()
		if err := p.Close(c); err != nil {
			t.Errorf("Close before any Begin: %v", err)
		}
		if err := p.Close(c); err != nil {
			t.Errorf("second Close: %v", err)
		}
		p = h.New(t)
		_ = sink.Transact(ctx(t), p, events(0, 1))
		done, cancel2 := context.WithCancel(context.Background())
		cancel2()
		if err := p.Close(done); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Close with a cancelled context: %v", err)
		}
		if time.Since(start) > 5*time.Second {
			t.Errorf("Close took %s", time.Since(start))
		}
	})
}

// perByte replaces each invalid byte with U+FFFD (encoding/json's way).
func perByte(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteString("\ufffd")
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func records(evs []*schemas.Event) []Record {
	out := make([]Record, len(evs))
	for i, ev := range evs {
		out[i] = Record{ID: ev.Id, Message: ev.Message}
	}
	return out
}
