package bus_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-router/herald/bus/bustest"
)

func TestAPublishWhoseAckIsLostIsPublishedAgainUnderTheSameID(t *testing.T) {
	b := bustest.Open(t)
	// A responder stands in for a stream leader on another node that dies
	// with the publish in flight: the first message is never answered and
	// the connection stays up, so only a timeout can tell.
	const subject = "lostack.test"
	var mu sync.Mutex
	var ids []string
	sub, err := b.NC.Subscribe(subject, func(m *nats.Msg) {
		mu.Lock()
		ids = append(ids, m.Header.Get(jetstream.MsgIDHeader))
		first := len(ids) == 1
		mu.Unlock()
		if !first {
			_ = m.Respond([]byte(`{"stream":"LOSTACK","seq":1}`))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	m := nats.NewMsg(subject)
	m.Header.Set(jetstream.MsgIDHeader, "batch-1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f, err := b.PublishAsync(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := b.Confirm(ctx, f); err != nil {
		t.Fatalf("confirm after a lost ack: %v", err)
	}
	t.Logf("confirmed %s after the ack was lost", time.Since(start).Round(time.Millisecond))
	mu.Lock()
	defer mu.Unlock()
	if len(ids) != 2 || ids[0] != "batch-1" || ids[1] != "batch-1" {
		t.Fatalf("the responder saw ids %q; want the message twice under batch-1", ids)
	}
}
