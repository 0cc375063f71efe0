package xmpp

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/xmppo/go-xmpp"

	"github.com/herald-router/herald/actors/sink"
	"github.com/herald-router/herald/actors/xmpp/prosodytest"
	"github.com/herald-router/herald/schemas"
)

// rawClient is go-xmpp used the plain way, the benchmark's yardstick: a
// send loop, then waiting for the server's answers (a ping after the
// messages, the IQ results of the publishes), so both sides measure what
// the server confirmed.
type rawClient struct {
	c       *xmpp.Client
	mu      sync.Mutex
	results map[string]chan struct{}
	dead    chan struct{}
}

func dialRaw(b *testing.B, srv *prosodytest.Server) *rawClient {
	b.Helper()
	o, err := srv.Options("pub", "raw")
	if err != nil {
		b.Fatal(err)
	}
	c, err := o.NewClient()
	if err != nil {
		b.Fatal(err)
	}
	r := &rawClient{c: c, results: map[string]chan struct{}{}, dead: make(chan struct{})}
	go func() {
		defer close(r.dead)
		for {
			st, err := c.Recv()
			if err != nil {
				return
			}
			if iq, ok := st.(xmpp.IQ); ok {
				r.mu.Lock()
				if w, ok := r.results[iq.ID]; ok {
					delete(r.results, iq.ID)
					close(w)
				}
				r.mu.Unlock()
			}
		}
	}()
	b.Cleanup(func() {
		_, _ = c.SendOrg("</stream:stream>")
		select {
		case <-r.dead:
		case <-time.After(3 * time.Second):
		}
	})
	return r
}

func (r *rawClient) expect(id string) chan struct{} {
	w := make(chan struct{})
	r.mu.Lock()
	r.results[id] = w
	r.mu.Unlock()
	return w
}

func (r *rawClient) wait(ws []chan struct{}) error {
	timeout := time.After(60 * time.Second)
	for _, w := range ws {
		select {
		case <-w:
		case <-r.dead:
			return errors.New("raw client: connection lost")
		case <-timeout:
			return errors.New("raw client: no answer after 60s")
		}
	}
	return nil
}

// BenchmarkConfirmed measures, in the same run against the same prosody,
// chat messages/s and PubSub items/s as the publisher commits them
// (confirmed by the server, in transactions of 1,000 events like
// herald's batches) beside a raw go-xmpp send loop to the same server
// (then one ping, or every publish result). It reports both rates and
// the publisher's share of the raw rate (target: at least 75%).
func BenchmarkConfirmed(b *testing.B) {
	srv := prosodytest.Start(b, prosodytest.Options{})
	sub := srv.Dial(b, "sub")
	raw := dialRaw(b, srv)
	const nMsg, nItem, batch = 5000, 3000, 1000
	text := "disk /var at 91% on web1 <warn> & rising: 1234567890 abcdefghijklmnopqrstuvwxyz"

	b.Run("chat", func(b *testing.B) {
		o := baseOptions(b, srv)
		o.Push.To = []string{srv.JID("sub")}
		p := newPublisher(b, o)
		evs := benchEvents(nMsg, text)
		var rawTime, sinkTime time.Duration
		for range b.N {
			start := time.Now()
			for i := range nMsg {
				if _, err := raw.c.Send(xmpp.Chat{Remote: srv.JID("sub"), Type: "chat", Text: evs[i].Message}); err != nil {
					b.Fatal(err)
				}
			}
			id := "ping" + strconv.FormatInt(time.Now().UnixNano(), 36)
			w := raw.expect(id)
			if _, err := raw.c.RawInformation(raw.c.JID(), prosodytest.Domain, id, "get", "<ping xmlns='urn:xmpp:ping'/>"); err != nil {
				b.Fatal(err)
			}
			if err := raw.wait([]chan struct{}{w}); err != nil {
				b.Fatal(err)
			}
			rawTime += time.Since(start)

			start = time.Now()
			for i := 0; i < nMsg; i += batch {
				if r := sink.Transact(b.Context(), p, evs[i:i+batch]); r.Err != nil {
					b.Fatal(r.Err)
				}
			}
			sinkTime += time.Since(start)
			sub.Sync(b)
			sub.Reset()
		}
		report(b, "msg/s", nMsg, rawTime, sinkTime)
	})

	b.Run("pubsub", func(b *testing.B) {
		rawNode, sinkNode := unique("bench-raw"), unique("bench-sink")
		sub.Subscribe(b, rawNode)
		sub.Subscribe(b, sinkNode)
		o := baseOptions(b, srv)
		o.PubSub = PubSubOptions{Service: prosodytest.PubSub, Node: sinkNode, Create: true, MaxItems: 100000}
		p := newPublisher(b, o)
		evs := benchEvents(nItem, text)
		var rawTime, sinkTime time.Duration
		for range b.N {
			start := time.Now()
			ws := make([]chan struct{}, 0, nItem)
			for i := range nItem {
				id := "pub" + strconv.Itoa(i)
				ws = append(ws, raw.expect(id))
				body := "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='" + rawNode + "'><item id='" + evs[i].Id + "'>" +
					string(appendPayload(nil, evs[i])) + "</item></publish></pubsub>"
				if _, err := raw.c.RawInformation(raw.c.JID(), prosodytest.PubSub, id, "set", body); err != nil {
					b.Fatal(err)
				}
			}
			if err := raw.wait(ws); err != nil {
				b.Fatal(err)
			}
			rawTime += time.Since(start)

			start = time.Now()
			for i := 0; i < nItem; i += batch {
				if r := sink.Transact(b.Context(), p, evs[i:i+batch]); r.Err != nil {
					b.Fatal(r.Err)
				}
			}
			sinkTime += time.Since(start)
			sub.Sync(b)
			sub.Reset()
		}
		report(b, "items/s", nItem, rawTime, sinkTime)
	})
}

func benchEvents(n int, text string) []*schemas.Event {
	out := make([]*schemas.Event, n)
	for i := range out {
		ev := eventFor(i, fmt.Sprintf("%s #%d", text, i))
		out[i] = ev
	}
	return out
}

func eventFor(i int, msg string) *schemas.Event {
	return &schemas.Event{
		Id: fmt.Sprintf("01BENCH%019d", i), Message: msg, Host: "web1", Service: "df", Class: "rfc3164", Certainty: 1,
		Source: "bench", ReceivedUnixNano: time.Now().UnixNano(), TimeUnixNano: time.Now().UnixNano(),
		Fields: []*schemas.Field{{Key: "pct", Value: &schemas.Value{Kind: &schemas.Value_Int{Int: 91}}}},
	}
}

func report(b *testing.B, unit string, n int, rawTime, sinkTime time.Duration) {
	total := float64(n * b.N)
	rawRate, sinkRate := total/rawTime.Seconds(), total/sinkTime.Seconds()
	b.ReportMetric(rawRate, "raw_"+unit)
	b.ReportMetric(sinkRate, "confirmed_"+unit)
	b.ReportMetric(100*sinkRate/rawRate, "%_of_raw")
	b.ReportMetric(0, "ns/op")
}
