package xmpp

import (
	"context"
	"testing"
	"time"

	"github.com/herald-router/herald/actors/sink"
	"github.com/herald-router/herald/actors/xmpp/prosodytest"
	"github.com/herald-router/herald/bus/bustest"
	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/schemas"
)

// TestAThrottleWindowSurvivesATakeover: one process handles part of a
// window and dies (its provider dropped without Close, its session cut as
// by kill -9); the process taking the sink over continues the window from
// the bucket: no more than throttle.events messages in the window in all,
// and one digest counting every folded event.
func TestAThrottleWindowSurvivesATakeover(t *testing.T) {
	srv := prosodytest.Start(t, prosodytest.Options{})
	sub := srv.Dial(t, "sub")
	b := bustest.Open(t)

	o := baseOptions(t, srv)
	o.Push.To = []string{srv.JID("sub")}
	o.Throttle = ThrottleOptions{Events: 10, Window: config.Duration(time.Minute), Key: []string{"host"}, MaxKeys: 100}
	cfg := config.Default()
	cfg.Sinks = map[string]*config.Sink{"alerts": {Type: "xmpp", Options: &o}}
	reg := sink.NewRegistry()
	Register(reg)
	// Built the way herald builds a sink: through the registry, with the
	// bus connection.
	build := func() *Publisher {
		t.Helper()
		p, err := reg.New(sink.Env{Name: "alerts", Config: cfg, Log: bustest.Logger(t), NATS: b.NC}, cfg.Sinks["alerts"])
		if err != nil {
			t.Fatal(err)
		}
		return p.(*Publisher)
	}
	now := time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }

	first := build() // never closed: it dies
	first.thr.now = clock
	in := events(0, 30)
	for _, ev := range in {
		ev.Host = "web1"
	}
	if r := sink.Transact(t.Context(), first, in[:8]); r.Err != nil {
		t.Fatal(r.Err)
	}
	now = now.Add(time.Second)
	// 2 sent, 5 folded; the events of db1 touch a second key.
	tx := append(append([]*schemas.Event(nil), in[8:15]...), hostEvents("db1", 100, 3)...)
	if r := sink.Transact(t.Context(), first, tx); r.Err != nil {
		t.Fatal(r.Err)
	}
	if w := first.Stats().Windows; w != 3 {
		t.Errorf("%d window writes for 2 transactions touching 1 and 2 keys, want 3", w)
	}
	// A transaction in progress when the process dies: its events are
	// folded, not committed, and come again to the next holder.
	if err := first.Begin(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, ev := range in[15:18] {
		if _, err := first.Do(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	first.drop() // kill -9: no End, no Close, no digest

	now = now.Add(10 * time.Second)
	second := build()
	t.Cleanup(func() { _ = second.Close(context.Background()) })
	second.thr.now = clock
	if r := sink.Transact(t.Context(), second, in[15:30]); r.Err != nil { // 15 to 17 again
		t.Fatal(r.Err)
	}
	sub.Sync(t)
	pushed := 0
	for _, m := range sub.Messages() {
		if id, ok := m.Attr("herald", "event"); ok && id >= in[0].Id && id <= in[len(in)-1].Id {
			pushed++
		}
	}
	if pushed != 10 {
		t.Fatalf("%d messages of web1 within its window across the takeover, want throttle.events = 10", pushed)
	}

	// The window closes: the next transaction sends its digest first.
	now = now.Add(time.Minute)
	if r := sink.Transact(t.Context(), second, hostEvents("db1", 200, 1)); r.Err != nil {
		t.Fatal(r.Err)
	}
	sub.Sync(t)
	var digests []prosodytest.Message
	for _, m := range sub.Messages() {
		if _, ok := m.Attr("herald", "digest"); ok {
			digests = append(digests, m)
		}
	}
	if len(digests) != 1 {
		t.Fatalf("%d digests, want 1", len(digests))
	}
	d := digests[0]
	if c, _ := d.Attr("herald", "count"); c != "20" {
		t.Errorf("digest counts %s, want 20 (30 events of web1, 10 sent)", c)
	}
	if f, _ := d.Attr("herald", "first"); f != in[10].Id {
		t.Errorf("digest's first is %s, want %s, folded by the first process", f, in[10].Id)
	}
	if l, _ := d.Attr("herald", "last"); l != in[29].Id {
		t.Errorf("digest's last is %s, want %s", l, in[29].Id)
	}

	// The digest confirmed, its window is gone from the bucket; db1's
	// window, reopened by the last event, is the only one left.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	left, err := second.windows.load(ctx, bustest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 || left["db1"] == nil {
		t.Errorf("windows in the bucket after the digest: %v, want db1's only", left)
	}
}

// hostEvents are n events of host from sequence number from on.
func hostEvents(host string, from, n int) []*schemas.Event {
	out := events(from, n)
	for _, ev := range out {
		ev.Host = host
	}
	return out
}

// TestAGracefulHandoverGoesOnWithTheWindow: Close sends the digest of a
// window still open and leaves the window's sent count to the next
// holder, which sends nothing more in it and digests only what it folded.
// A provider that never held the sink writes nothing at Close.
func TestAGracefulHandoverGoesOnWithTheWindow(t *testing.T) {
	srv := prosodytest.Start(t, prosodytest.Options{})
	sub := srv.Dial(t, "sub")
	b := bustest.Open(t)

	o := baseOptions(t, srv)
	o.Push.To = []string{srv.JID("sub")}
	o.Throttle = ThrottleOptions{Events: 10, Window: config.Duration(time.Minute), Key: []string{"host"}, MaxKeys: 100}
	now := time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)
	build := func() *Publisher {
		t.Helper()
		p := newPublisher(t, o)
		p.keepWindows(openWindows(t, b, "alerts"))
		p.thr.now = func() time.Time { return now }
		return p
	}
	digests := func() []prosodytest.Message {
		sub.Sync(t)
		var out []prosodytest.Message
		for _, m := range sub.Messages() {
			if _, ok := m.Attr("herald", "digest"); ok {
				out = append(out, m)
			}
		}
		return out
	}

	first := build()
	idle := build() // waits for the lease and never gets it
	if r := sink.Transact(t.Context(), first, events(0, 15)); r.Err != nil {
		t.Fatal(r.Err)
	}
	if err := first.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if ds := digests(); len(ds) != 1 {
		t.Fatalf("%d digests at Close, want 1", len(ds))
	} else if c, _ := ds[0].Attr("herald", "count"); c != "5" {
		t.Errorf("digest at Close counts %s, want 5", c)
	}
	if err := idle.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if w := idle.Stats().Windows; w != 0 {
		t.Errorf("a provider that never began wrote %d windows at Close", w)
	}

	now = now.Add(10 * time.Second)
	second := build()
	if r := sink.Transact(t.Context(), second, events(100, 4)); r.Err != nil {
		t.Fatal(r.Err)
	}
	if s := second.Stats(); s.Messages != 0 || s.Folded != 4 {
		t.Errorf("the next holder sent %d messages and folded %d in a full window, want 0 and 4", s.Messages, s.Folded)
	}
	now = now.Add(time.Minute)
	if err := second.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	ds := digests()
	if len(ds) != 2 {
		t.Fatalf("%d digests in all, want 2", len(ds))
	}
	if c, _ := ds[1].Attr("herald", "count"); c != "4" {
		t.Errorf("the next holder's digest counts %s, want 4", c)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if left, err := second.windows.load(ctx, bustest.Logger(t)); err != nil || len(left) != 0 {
		t.Errorf("windows in the bucket after the last digest: %v (%v), want none", left, err)
	}
}
