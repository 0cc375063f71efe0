package tap_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/bus/bustest"
	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/internal/filter"
	"github.com/herald-router/herald/internal/tap"
	"github.com/herald-router/herald/schemas"
)

func TestEachStageHasItsSubject(t *testing.T) {
	for _, tc := range []struct{ stage, subject string }{
		{"raw", "herald.raw.>"},
		{"events", "herald.events.>"},
		{"resolved", "herald.resolved"},
		{"targets", "herald.target.>"},
		{"target.audit", "herald.target.audit"},
		{"dlq", "herald.dlq.>"},
	} {
		got, err := tap.Subject(tc.stage)
		if err != nil || got != tc.subject {
			t.Errorf("Subject(%q) = %q, %v; want %q", tc.stage, got, err, tc.subject)
		}
	}
	for _, bad := range []string{"", "classifier", "target.", "target.a.b", "target.>"} {
		if _, err := tap.Subject(bad); !errors.Is(err, tap.ErrUnknownStage) {
			t.Errorf("Subject(%q): error %v, want ErrUnknownStage", bad, err)
		}
	}
}

func TestTheServerURLComesFromTheBusConfig(t *testing.T) {
	b := config.Default().Bus
	if u, err := tap.ServerURL(b); err != nil || u != "nats://127.0.0.1:4222" {
		t.Errorf("embedded: %q, %v", u, err)
	}
	b.URLs = []string{"nats://a:4222", "nats://b:4222"}
	if u, err := tap.ServerURL(b); err != nil || u != "nats://a:4222,nats://b:4222" {
		t.Errorf("urls: %q, %v", u, err)
	}
	b.URLs, b.Embedded.Listen = nil, ""
	if _, err := tap.ServerURL(b); err == nil {
		t.Error("an embedded server without a listener has no URL to give")
	}
}

// run starts a tap on b and returns once it is subscribed; wait gives its
// output after it stopped (by Count, or the test's end).
func run(t *testing.T, b *bus.Bus, stage, expr string, count int) (wait func() (string, string)) {
	t.Helper()
	subject, err := tap.Subject(stage)
	if err != nil {
		t.Fatal(err)
	}
	var prog *filter.Program
	if expr != "" {
		if prog, err = filter.Compile(expr); err != nil {
			t.Fatal(err)
		}
	}
	var out, errs bytes.Buffer
	subscribed := make(chan struct{})
	done := make(chan error, 1)
	tp := &tap.Tap{Conn: b.NC, Subject: subject, Filter: prog, Count: count, Out: &out, Errs: &errs,
		Subscribed: func() { close(subscribed) }}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	go func() { done <- tp.Run(ctx) }()
	select {
	case <-subscribed:
	case err := <-done:
		t.Fatalf("tap ended before subscribing: %v", err)
	case <-ctx.Done():
		t.Fatal("tap did not subscribe within 10s")
	}
	return func() (string, string) {
		t.Helper()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("tap: %v", err)
			}
		case <-ctx.Done():
			t.Fatalf("tap did not print %d events within 10s; so far:\n%s%s", count, out.String(), errs.String())
		}
		return out.String(), errs.String()
	}
}

func publishBatch(t *testing.T, b *bus.Bus, subject, id string, evs ...*schemas.Event) {
	t.Helper()
	msgs, err := bus.EncodeBatches(subject, id, evs, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if err := b.Publish(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
}

func lines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var evs []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not a JSON line: %q: %v", l, err)
		}
		evs = append(evs, m)
	}
	return evs
}

// The tap sees batches and applications' JSON events as they are stored,
// and the stage's consumer still has every one of them afterwards.
func TestATapPrintsWhatPassesAndTakesNothingAway(t *testing.T) {
	b := bustest.Open(t)
	wait := run(t, b, "events", "", 3)
	publishBatch(t, b, bus.EventsSubject("rfc5424"), "b1",
		&schemas.Event{Class: "rfc5424", Host: "web1", Message: "one"},
		&schemas.Event{Class: "rfc5424", Host: "web2", Message: "two"})
	m := nats.NewMsg(bus.EventsSubject("billing"))
	m.Data = []byte(`{"message":"three","user":"ada"}`)
	if err := b.Publish(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	out, _ := wait()
	evs := lines(t, out)
	if len(evs) != 3 || evs[0]["message"] != "one" || evs[1]["host"] != "web2" || evs[2]["class"] != "billing" || evs[2]["user"] != "ada" {
		t.Fatalf("tap printed:\n%s", out)
	}
	cons, err := b.Consumer(t.Context(), bus.StreamEvents, bus.ConsumerResolver)
	if err != nil {
		t.Fatal(err)
	}
	// The server counts a consumer's pending messages a moment after it
	// stored them.
	bustest.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		info, err := cons.Info(t.Context())
		if err != nil {
			return err
		}
		if info.NumPending != 2 {
			return fmt.Errorf("the resolver's consumer has %d messages pending, want both still there", info.NumPending)
		}
		return nil
	})
}

func TestAFilterKeepsTheEventsItMatches(t *testing.T) {
	b := bustest.Open(t)
	wait := run(t, b, "resolved", `host startsWith "db"`, 2)
	publishBatch(t, b, bus.SubjectResolved, "b1",
		&schemas.Event{Host: "web1", Message: "no"},
		&schemas.Event{Host: "db1", Message: "yes 1"},
		&schemas.Event{Host: "web2", Message: "no"},
		&schemas.Event{Host: "db2", Message: "yes 2"})
	out, _ := wait()
	evs := lines(t, out)
	if len(evs) != 2 || evs[0]["message"] != "yes 1" || evs[1]["message"] != "yes 2" {
		t.Fatalf("tap printed:\n%s", out)
	}
}

// Raw records are not classified yet: the tap shows the record as the
// message, and a record that is not a batch or JSON is said on stderr.
func TestRawRecordsShowTheirTextAndBadMessagesAreReported(t *testing.T) {
	b := bustest.Open(t)
	wait := run(t, b, "raw", "", 1)
	if err := b.NC.Publish(bus.RawSubject("syslog"), []byte("not a batch")); err != nil {
		t.Fatal(err)
	}
	publishBatch(t, b, bus.RawSubject("syslog"), "b1", &schemas.Event{Raw: []byte("<13>hello\n"), Source: "syslog"})
	out, errs := wait()
	evs := lines(t, out)
	if len(evs) != 1 || evs[0]["message"] != "<13>hello" || evs[0]["source"] != "syslog" {
		t.Fatalf("tap printed:\n%s", out)
	}
	if !strings.Contains(errs, "herald.raw.syslog") {
		t.Errorf("the undecodable message is not reported: %q", errs)
	}
}

func TestDeadLettersShowWhyTheyWereDeadLettered(t *testing.T) {
	b := bustest.Open(t)
	wait := run(t, b, "dlq", "", 1)
	msgs, err := bus.EncodeBatches(bus.SubjectResolved, "b1", []*schemas.Event{{Message: "odd"}}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.DeadLetter(t.Context(), "router", "b1", bus.SubjectResolved, "filter_error", "cannot judge", msgs[0].Data, bus.EncodingBatch); err != nil {
		t.Fatal(err)
	}
	out, _ := wait()
	evs := lines(t, out)
	if len(evs) != 1 || evs[0]["message"] != "odd" || evs[0]["dlq_reason"] != "filter_error" || evs[0]["dlq_stage"] != "router" || evs[0]["dlq_subject"] != bus.SubjectResolved {
		t.Fatalf("tap printed:\n%s", out)
	}
}
