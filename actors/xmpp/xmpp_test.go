package xmpp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-router/herald/actors/sink"
	"github.com/herald-router/herald/actors/sink/sinktest"
	"github.com/herald-router/herald/actors/xmpp/prosodytest"
	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/schemas"
)

var seq atomic.Int64

// unique makes names (nodes, rooms) no earlier case used.
func unique(prefix string) string { return prefix + strconv.FormatInt(seq.Add(1), 10) }

// baseOptions connects as pub over STARTTLS, verifying the test CA, with
// short timeouts so that failures show quickly.
func baseOptions(t testing.TB, srv *prosodytest.Server) Options {
	t.Helper()
	o := *DefaultOptions()
	o.Server = srv.Addr()
	o.JID = srv.JID("pub")
	o.PasswordFile = srv.PasswordFile(t)
	o.CAFile = srv.CAFile
	o.Timeouts = TimeoutOptions{
		Connect: config.Duration(3 * time.Second), Write: config.Duration(2 * time.Second),
		Confirm: config.Duration(2 * time.Second), Close: config.Duration(time.Second),
	}
	return o
}

func newPublisher(t testing.TB, o Options) *Publisher {
	t.Helper()
	p, err := New(o, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	return p
}

// messageRecords reassembles the messages carrying herald's metadata into
// records, in arrival order, one per event and copy (a split body's parts
// joined, the part markers removed).
func messageRecords(msgs []prosodytest.Message, from func(string) bool) []sinktest.Record {
	var out []sinktest.Record
	parts := map[string][]string{}
	for _, m := range msgs {
		id, ok := m.Attr("herald", "event")
		if !ok || !from(m.From) {
			continue
		}
		n, _ := strconv.Atoi(attrOr(m, "parts", "1"))
		if n <= 1 {
			out = append(out, sinktest.Record{ID: id, Message: m.Body})
			continue
		}
		i, _ := strconv.Atoi(attrOr(m, "part", "1"))
		parts[id] = append(parts[id], strings.TrimSuffix(m.Body, PartMarker(i, n)))
		if len(parts[id]) == n {
			out = append(out, sinktest.Record{ID: id, Message: strings.Join(parts[id], "")})
			delete(parts, id)
		}
	}
	return out
}

func attrOr(m prosodytest.Message, name, def string) string {
	if v, ok := m.Attr("herald", name); ok {
		return v
	}
	return def
}

// itemRecords decodes PubSub items into records, once per item id, in
// the order first seen (a republished id replaces itself on the node).
func itemRecords(t testing.TB, items []prosodytest.Item, node string) []sinktest.Record {
	t.Helper()
	var out []sinktest.Record
	at := map[string]int{}
	for _, it := range items {
		if it.Node != node {
			continue
		}
		ev, err := DecodeEvent(it.Payload)
		if err != nil {
			t.Errorf("item %s: %v\n%.300s", it.ID, err, it.Payload)
			continue
		}
		if ev.Id != it.ID {
			t.Errorf("item %s holds event %s", it.ID, ev.Id)
		}
		if i, ok := at[it.ID]; ok {
			out[i].Message = ev.Message
			continue
		}
		at[it.ID] = len(out)
		out = append(out, sinktest.Record{ID: ev.Id, Message: ev.Message})
	}
	return out
}

func TestSinkContract(t *testing.T) {
	srv := prosodytest.Start(t, prosodytest.Options{})
	sub := srv.Dial(t, "sub")
	breakServer := func(t *testing.T) func() {
		// What the sink committed is what the server confirmed; the
		// subscriber reads it a moment later. Let it arrive before the
		// outage: a server killed with -9 loses what it had not yet
		// written to the subscriber, which says nothing about the sink.
		sub.Sync(t)
		srv.Kill(t)
		return func() {
			srv.Start(t)
			sub.Reconnect(t)
		}
	}

	t.Run("push to a JID", func(t *testing.T) {
		// Lossy: XML 1.0 cannot carry C0 control characters, so a message
		// body delivers them as U+FFFD; TestMessagesCarryHostileText
		// checks the exact text that arrives.
		sinktest.Run(t, sinktest.Harness{
			New: func(t *testing.T) sink.Provider {
				sub.Sync(t)
				sub.Reset()
				o := baseOptions(t, srv)
				o.Push.To = []string{srv.JID("sub")}
				return newPublisher(t, o)
			},
			ReadBack: func(t *testing.T) []sinktest.Record {
				sub.Sync(t)
				return messageRecords(sub.Messages(), func(from string) bool { return strings.HasPrefix(from, srv.JID("pub")) })
			},
			Break: breakServer,
			Lossy: true,
		})
	})

	t.Run("push to a room", func(t *testing.T) {
		var room string
		sinktest.Run(t, sinktest.Harness{
			New: func(t *testing.T) sink.Provider {
				room = unique("room") + "@" + prosodytest.MUC
				sub.Join(t, room, "sub")
				sub.Sync(t)
				sub.Reset()
				o := baseOptions(t, srv)
				o.Push.Rooms = []string{room}
				return newPublisher(t, o)
			},
			ReadBack: func(t *testing.T) []sinktest.Record {
				sub.Sync(t)
				return messageRecords(sub.Messages(), func(from string) bool { return from == room+"/herald" })
			},
			Break: breakServer,
			Lossy: true,
		})
	})

	t.Run("publish to a node", func(t *testing.T) {
		var node string
		sinktest.Run(t, sinktest.Harness{
			New: func(t *testing.T) sink.Provider {
				node = unique("node")
				sub.Subscribe(t, node)
				o := baseOptions(t, srv)
				o.PubSub = PubSubOptions{Service: prosodytest.PubSub, Node: node, Create: true, MaxItems: 100000}
				return newPublisher(t, o)
			},
			ReadBack: func(t *testing.T) []sinktest.Record {
				sub.Sync(t)
				return itemRecords(t, sub.Items(), node)
			},
			Break: breakServer,
		})
	})
}

// hostile are texts that break naive XML writers.
var hostile = []string{
	`<xml attr="1">&amp; </body></message><message> ' " \ `,
	"cdata end ]]> and ]]&gt; and <![CDATA[ x ]]>",
	"nul \x00 bell \x07 escape \x1b[31m vt \x0b ff \x0c del \x7f",
	"line one\nline two\r\nthree\ttab",
	"not utf-8 \xff\xfe end \xc3",
	"U+FFFE \ufffe U+FFFF \uffff BOM \ufeff emoji 🦜",
	"%(message) %s {{.x}} ${HOME}",
}

func TestMessagesCarryHostileText(t *testing.T) {
	srv := prosodytest.Start(t, prosodytest.Options{})
	sub := srv.Dial(t, "sub")
	o := baseOptions(t, srv)
	o.Push.To = []string{srv.JID("sub")}
	o.Body = "%(message) | host=%(host) | k=%(k)"
	p := newPublisher(t, o)
	var in []*schemas.Event
	for i, h := range hostile {
		ev := sinktest.Event(i, h)
		ev.Host = h
		ev.Fields = append(ev.Fields, &schemas.Field{Key: "k", Value: &schemas.Value{Kind: &schemas.Value_Str{Str: h}}})
		in = append(in, ev)
	}
	r := sink.Transact(t.Context(), p, in)
	if r.Err != nil || len(r.Failed) > 0 {
		t.Fatalf("Transact = %+v", r)
	}
	sub.Sync(t)
	got := messageRecords(sub.Messages(), func(string) bool { return true })
	if len(got) != len(in) {
		t.Fatalf("got %d messages, want %d", len(got), len(in))
	}
	for i, g := range got {
		want := Readable(hostile[i] + " | host=" + hostile[i] + " | k=" + hostile[i])
		if g.Message != want {
			t.Errorf("message %d arrived as %q, want %q", i, g.Message, want)
		}
	}
	// The stream survived it all: another transaction works on the same
	// session.
	if r := sink.Transact(t.Context(), p, []*schemas.Event{sinktest.Event(99, "after")}); r.Err != nil {
		t.Fatalf("after the hostile ones: %v", r.Err)
	}
	if s := p.Stats(); s.Connects != 1 {
		t.Errorf("%d sessions opened, want 1: the hostile text broke the stream", s.Connects)
	}
}

func TestOversizeBodies(t *testing.T) {
	srv := prosodytest.Start(t, prosodytest.Options{})
	sub := srv.Dial(t, "sub")
	big := strings.Repeat("a<&é", 1<<16) // 320 KiB of text, 650 KiB escaped
	for _, tc := range []struct {
		name     string
		oversize string
		check    func(t *testing.T, r sink.Result, got []sinktest.Record, msgs int)
	}{
		{"split sends the whole body in parts that reassemble exactly", OversizeSplit, func(t *testing.T, r sink.Result, got []sinktest.Record, msgs int) {
			if len(got) != 1 || got[0].Message != big {
				t.Fatalf("got %d records, first %d bytes; want the %d bytes back", len(got), len(firstMessage(got)), len(big))
			}
			if msgs < 2 {
				t.Errorf("%d messages: the body was not split", msgs)
			}
		}},
		{"truncate sends one message ending with a marker", OversizeTruncate, func(t *testing.T, r sink.Result, got []sinktest.Record, msgs int) {
			if len(got) != 1 || msgs != 1 {
				t.Fatalf("got %d records in %d messages, want 1", len(got), msgs)
			}
			m := got[0].Message
			if want := "… [truncated: " + strconv.Itoa(len(big)) + " bytes in all]"; !strings.HasSuffix(m, want) || !strings.HasPrefix(big, strings.TrimSuffix(m, want)) {
				t.Errorf("truncated body ends %q, want a prefix of the text then %q", m[max(0, len(m)-60):], want)
			}
		}},
		{"reject dead-letters the event with xmpp_too_large and sends the others", OversizeReject, func(t *testing.T, r sink.Result, got []sinktest.Record, msgs int) {
			if code, ok := sink.IsPermanent(r.Failed[0]); !ok || code != CodeTooLarge {
				t.Errorf("failure of the big event = %v, want code %s", r.Failed[0], CodeTooLarge)
			}
			if len(got) != 0 {
				t.Errorf("%d records arrived, want none", len(got))
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub.Sync(t)
			sub.Reset()
			o := baseOptions(t, srv)
			o.Push.To = []string{srv.JID("sub")}
			o.Oversize = tc.oversize
			p := newPublisher(t, o)
			r := sink.Transact(t.Context(), p, []*schemas.Event{sinktest.Event(1, big)})
			if r.Err != nil {
				t.Fatalf("Transact: %v", r.Err)
			}
			sub.Sync(t)
			got := messageRecords(sub.Messages(), func(string) bool { return true })
			tc.check(t, r, got, len(sub.Messages()))
			if r := sink.Transact(t.Context(), p, []*schemas.Event{sinktest.Event(2, "after")}); r.Err != nil || p.Stats().Connects != 1 {
				t.Errorf("the stream did not survive: %v, %d sessions", r.Err, p.Stats().Connects)
			}
		})
	}
}

func firstMessage(rs []sinktest.Record) string {
	if len(rs) == 0 {
		return ""
	}
	return rs[0].Message
}

func TestAHungServerSuspendsTheSinkWithinItsTimeout(t *testing.T) {
	srv := prosodytest.Start(t, prosodytest.Options{})
	sub := srv.Dial(t, "sub")

	t.Run("a server that stops mid-session (SIGSTOP) fails the transaction within timeouts.confirm", func(t *testing.T) {
		o := baseOptions(t, srv)
		o.Push.To = []string{srv.JID("sub")}
		o.PubSub = PubSubOptions{Service: prosodytest.PubSub, Node: unique("hung"), Create: true}
		p := newPublisher(t, o)
		if r := sink.Transact(t.Context(), p, events(0, 10)); r.Err != nil {
			t.Fatal(r.Err)
		}
		srv.Pause(t)
		resumed := false
		defer func() {
			if !resumed {
				srv.Resume(t)
			}
		}()
		start := time.Now()
		// Enough to fill the socket buffers: go-xmpp's writes block then,
		// and only the relay's write deadline gets them out.
		r := sink.Transact(t.Context(), p, bigEvents(2000, 4<<10))
		took := time.Since(start)
		if r.Err == nil || !errors.Is(r.Err, ErrTimeout) {
			t.Fatalf("Transact on a hung server = %v, want ErrTimeout", r.Err)
		}
		if limit := time.Duration(o.Timeouts.Write+o.Timeouts.Confirm) + time.Second; took > limit {
			t.Errorf("the failure took %s, more than the timeouts allow (%s)", took, limit)
		}
		start = time.Now()
		if err := p.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("Close on a hung server took %s", took)
		}
		srv.Resume(t)
		resumed = true
		p2 := newPublisher(t, o)
		if r := sink.Transact(t.Context(), p2, events(10, 10)); r.Err != nil {
			t.Fatalf("after the server came back: %v", r.Err)
		}
		sub.Sync(t)
	})

	t.Run("a server that accepts TCP and never answers fails Begin within timeouts.connect", func(t *testing.T) {
		// A plain TCP listener that accepts and then says nothing stands
		// for a hung XMPP server here.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				t.Cleanup(func() { _ = c.Close() })
			}
		}()
		o := baseOptions(t, srv)
		o.Server = ln.Addr().String()
		o.Push.To = []string{srv.JID("sub")}
		o.Timeouts.Connect = config.Duration(time.Second)
		p := newPublisher(t, o)
		start := time.Now()
		r := sink.Transact(t.Context(), p, events(0, 3))
		if r.Err == nil || !errors.Is(r.Err, ErrTimeout) {
			t.Fatalf("Transact = %v, want ErrTimeout", r.Err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("took %s with a 1s connect timeout", took)
		}
		start = time.Now()
		_ = p.Close(context.Background())
		if took := time.Since(start); took > time.Second {
			t.Errorf("Close took %s", took)
		}
	})
}

func events(from, n int) []*schemas.Event {
	out := make([]*schemas.Event, n)
	for i := range out {
		out[i] = sinktest.Event(from+i, fmt.Sprintf("event %d", from+i))
	}
	return out
}

func bigEvents(n, size int) []*schemas.Event {
	out := make([]*schemas.Event, n)
	for i := range out {
		out[i] = sinktest.Event(i+1000, strings.Repeat("x", size))
	}
	return out
}

func TestThrottleFoldsTheExcessIntoOneDigestPerWindow(t *testing.T) {
	srv := prosodytest.Start(t, prosodytest.Options{})
	sub := srv.Dial(t, "sub")
	o := baseOptions(t, srv)
	o.Push.To = []string{srv.JID("sub")}
	o.Throttle = ThrottleOptions{Events: 10, Window: config.Duration(time.Minute), Key: []string{"host"}, MaxKeys: 100}
	p := newPublisher(t, o)
	now := time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)
	p.thr.now = func() time.Time { return now }

	in := events(0, 1000)
	for i, ev := range in {
		ev.Host = "web1"
		if i%100 == 99 {
			ev.Host = "db1" // 10 events of db1: none folded
		}
	}
	for i := 0; i < len(in); i += 100 {
		if r := sink.Transact(t.Context(), p, in[i:i+100]); r.Err != nil {
			t.Fatal(r.Err)
		}
		now = now.Add(time.Second)
	}
	sub.Sync(t)
	if got := len(sub.Messages()); got != 20 {
		t.Fatalf("%d messages within the window, want 10 per host", got)
	}
	// A failed transaction does not count its events twice.
	srv.Kill(t)
	if r := sink.Transact(t.Context(), p, events(5000, 5)); r.Err == nil {
		t.Fatal("a transaction on a killed server succeeded")
	}
	srv.Start(t)
	sub.Reconnect(t)
	now = now.Add(time.Minute) // the window closed: the next transaction sends the digest first
	if r := sink.Transact(t.Context(), p, []*schemas.Event{sinktest.Event(9999, "next window")}); r.Err != nil {
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
	if c, _ := d.Attr("herald", "count"); c != "980" {
		t.Errorf("digest counts %s, want 980", c)
	}
	if f, _ := d.Attr("herald", "first"); f != in[10].Id {
		t.Errorf("digest's first is %s, want %s", f, in[10].Id)
	}
	if want := "980 more like this from host=web1"; !strings.HasPrefix(d.Body, want) {
		t.Errorf("digest body %q, want it to start %q", d.Body, want)
	}
	if s := p.Stats(); s.Folded != 980 || s.Digests != 1 {
		t.Errorf("stats %+v, want 980 folded, 1 digest", s)
	}

	// Close sends the digest of a window still open.
	for i := 0; i < 15; i++ {
		if r := sink.Transact(t.Context(), p, []*schemas.Event{sinktest.Event(20000+i, "burst")}); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if err := p.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	sub.Sync(t)
	last := sub.Messages()[len(sub.Messages())-1]
	if c, _ := last.Attr("herald", "count"); c != "6" {
		t.Errorf("digest at Close counts %q, want 6 (16 events of host-1 in the window, 10 sent)", c)
	}
}
