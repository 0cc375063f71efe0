package stage_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-router/herald/actors/stage"
	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/bus/bustest"
	"github.com/herald-router/herald/internal/metrics"
)

// slow stands for a stage that is busy (a slow sink, a starved machine):
// each message takes a while, so the ones behind it wait in the mailbox
// longer than the ack wait.
type slow struct {
	mu          sync.Mutex
	handled     int
	redelivered int
	sentinel    bool
}

func (s *slow) Handle(_ context.Context, m jetstream.Msg) {
	if string(m.Data()) == "sentinel" {
		s.mu.Lock()
		s.sentinel = true
		s.mu.Unlock()
		_ = m.Ack()
		return
	}
	time.Sleep(300 * time.Millisecond)
	md, _ := m.Metadata()
	s.mu.Lock()
	s.handled++
	if md.NumDelivered > 1 {
		s.redelivered++
	}
	s.mu.Unlock()
	_ = m.Ack()
}

func TestQueuedMessagesAreKeptAliveAndNotRedelivered(t *testing.T) {
	b := bustest.Open(t) // consumers with a 2 s ack wait
	for i := range 12 {
		if _, err := b.JS.Publish(context.Background(), bus.EventsSubject("app"), fmt.Appendf(nil, `{"message":"%d"}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := b.Consumer(context.Background(), bus.StreamEvents, bus.ConsumerResolver)
	if err != nil {
		t.Fatal(err)
	}
	h := &slow{}
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return bustest.Logger(t) }))
	r := &stage.Runner{Name: "slow", Consumers: []jetstream.Consumer{cons}, Handler: h, Metrics: metrics.New().Stage("slow"),
		Log: bustest.Logger(t), AckWait: 2 * time.Second}
	if err := r.Start(sys); err != nil {
		t.Fatal(err)
	}
	defer func() { r.Stop(); sys.Shutdown() }()
	// 12 × 300 ms: the last message waits about 3.3 s, beyond the 2 s ack wait.
	bustest.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.handled < 12 {
			return fmt.Errorf("%d of 12 handled", h.handled)
		}
		return nil
	})
	// Redelivered copies would queue behind the originals; a sentinel
	// published now is handled after all of them.
	if _, err := b.JS.Publish(context.Background(), bus.EventsSubject("app"), []byte("sentinel")); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		h.mu.Lock()
		defer h.mu.Unlock()
		if !h.sentinel {
			return fmt.Errorf("sentinel not handled yet (%d handled)", h.handled)
		}
		return nil
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.redelivered != 0 || h.handled != 12 {
		t.Errorf("handled %d, of which %d redelivered: messages waiting in the mailbox must be kept alive", h.handled, h.redelivered)
	}
}
