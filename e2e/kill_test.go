package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// appPublisher publishes JSON events onto herald.events.app the way an
// application does: JetStream publishes with acks, one Nats-Msg-Id per
// event so that a retry after a lost ack is dropped by the stream's
// de-duplication. It keeps retrying what was not acked until every event
// is acked or its context ends.
type appPublisher struct {
	total, window int

	mu      sync.Mutex
	acked   map[int]bool
	retries int      // publishes that were retried after an error or timeout
	errs    []string // the first few publish errors, for the log
}

func (p *appPublisher) ackedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acked)
}

func (p *appPublisher) run(ctx context.Context, url string) error {
	nc, err := nats.Connect(url, nats.Name("e2e-app"), nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond), nats.RetryOnFailedConnect(true), nats.Timeout(2*time.Second),
		// Connection errors while herald is down are expected; keep them
		// out of the test output (nats.go prints them by default).
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { p.noteErr(err) }))
	if err != nil {
		return fmt.Errorf("connect %s: %w", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(p.window),
		jetstream.WithPublishAsyncTimeout(5*time.Second))
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	pending := make([]int, 0, p.total)
	for i := range p.total {
		pending = append(pending, i)
	}
	for len(pending) > 0 {
		if ctx.Err() != nil {
			return fmt.Errorf("%d events still not acked: %w", len(pending), ctx.Err())
		}
		n := min(p.window, len(pending))
		win := pending[:n]
		type sent struct {
			seq int
			f   jetstream.PubAckFuture
		}
		var futures []sent
		var failed []int
		for _, seq := range win {
			data := fmt.Appendf(nil, `{"message":"m-%d","host":"app1","service":"e2e","seq":%d}`, seq, seq)
			f, err := js.PublishAsync("herald.events.app", data, jetstream.WithMsgID(fmt.Sprintf("e2e-%d", seq)))
			if err != nil {
				p.noteErr(err)
				failed = append(failed, seq)
				continue
			}
			futures = append(futures, sent{seq, f})
		}
		for _, s := range futures {
			select {
			case <-s.f.Ok():
				p.mu.Lock()
				p.acked[s.seq] = true
				p.mu.Unlock()
			case err := <-s.f.Err():
				p.noteErr(err)
				failed = append(failed, s.seq)
			case <-ctx.Done():
				return fmt.Errorf("waiting for acks: %w", ctx.Err())
			}
		}
		rest := append(failed, pending[n:]...)
		p.mu.Lock()
		p.retries += len(failed)
		p.mu.Unlock()
		if len(failed) > 0 {
			// herald is down or restarting: give it a moment before retrying.
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
			}
		}
		pending = rest
	}
	return nil
}

func (p *appPublisher) noteErr(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.errs) < 5 {
		p.errs = append(p.errs, err.Error())
	}
}

func TestKill9WhileProcessingLosesNothing(t *testing.T) {
	const (
		total = 50000
		kills = 2
		// Duplicates come only from work a stage had finished but not yet
		// acked when it was killed: at most MaxAckPending (256) messages per
		// consumer, and the JSON path carries one event per message, so a
		// kill can duplicate a few hundred events at the sink. 5000 per kill
		// leaves room for batching downstream and still catches a replay of
		// everything.
		dupBound = kills * 5000
	)
	start := time.Now()
	dir := t.TempDir()
	natsPort, metricsPort := freePort(t), freePort(t)
	cfg := writeConfig(t, dir, configParams{NATSPort: natsPort, MetricsPort: metricsPort, AckWait: "2s"})
	h := startHerald(t, "herald-1", cfg, metricsPort)
	h.waitReady(30 * time.Second)

	pub := &appPublisher{total: total, window: 1000, acked: map[int]bool{}}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	pubDone := make(chan error, 1)
	go func() { pubDone <- pub.run(ctx, fmt.Sprintf("nats://127.0.0.1:%d", natsPort)) }()
	t.Cleanup(func() {
		cancel()
		<-pubDone
	})

	ids := map[string]map[string]bool{} // message -> the event ids it was written with
	sink := newSinkFile(filepath.Join(dir, "out", "events.jsonl"), func(line []byte) (string, error) {
		var ev struct {
			Message string `json:"message"`
			ID      string `json:"id"`
		}
		if err := json.Unmarshal(line, &ev); err != nil {
			return "", err
		}
		if ids[ev.Message] == nil {
			ids[ev.Message] = map[string]bool{}
		}
		ids[ev.Message][ev.ID] = true
		return ev.Message, nil
	})
	for k := 1; k <= kills; k++ {
		threshold := total * k / (kills + 1)
		eventually(t, 90*time.Second, 5*time.Millisecond, func() error {
			if h.exited() {
				t.Fatalf("%s exited with code %d before it was killed", h.name, h.exitCode)
			}
			if err := sink.poll(); err != nil {
				return err
			}
			if sink.distinct() < threshold {
				return fmt.Errorf("%d distinct events in the sink, waiting for %d before kill %d (%d acked so far)",
					sink.distinct(), threshold, k, pub.ackedCount())
			}
			return nil
		})
		h.kill()
		t.Logf("kill %d: SIGKILL at %s with %d distinct events in the sink, %d acked by JetStream",
			k, time.Since(start).Round(time.Millisecond), sink.distinct(), pub.ackedCount())
		h = startHerald(t, fmt.Sprintf("herald-%d", k+1), cfg, metricsPort)
		h.waitReady(30 * time.Second)
		t.Logf("restart %d: ready at %s", k, time.Since(start).Round(time.Millisecond))
	}

	var pubErr error
	select {
	case pubErr = <-pubDone:
		pubDone <- pubErr // for the cleanup
	case <-ctx.Done():
		t.Fatalf("publisher did not finish: %d of %d acked", pub.ackedCount(), total)
	}
	if pubErr != nil && !errors.Is(pubErr, context.Canceled) {
		t.Errorf("publisher: %v", pubErr)
	}
	pub.mu.Lock()
	acked := map[string]bool{}
	for seq := range pub.acked {
		acked[fmt.Sprintf("m-%d", seq)] = true
	}
	t.Logf("publisher: %d of %d events acked, %d publishes retried, errors e.g. %q", len(acked), total, pub.retries, pub.errs)
	pub.mu.Unlock()

	eventually(t, 90*time.Second, 20*time.Millisecond, func() error {
		if h.exited() {
			t.Fatalf("%s exited with code %d", h.name, h.exitCode)
		}
		if err := sink.poll(); err != nil {
			return err
		}
		tl := sink.tally(acked)
		if len(tl.missing) > 0 {
			return fmt.Errorf("%d acked events not in the sink yet, e.g. %s", len(tl.missing), firstFew(tl.missing, 5))
		}
		return nil
	})
	tl := sink.tally(acked)
	t.Logf("sink: %d lines, %d distinct events, %d duplicate copies of %d events (bound %d), all %d acked events present, at %s",
		sink.lines, sink.distinct(), tl.duplicates, len(tl.dupKeys), dupBound, len(acked), time.Since(start).Round(time.Millisecond))
	if len(tl.dupKeys) > 0 {
		sameID := 0
		for _, k := range tl.dupKeys {
			if len(ids[k]) == 1 {
				sameID++
			}
		}
		t.Logf("duplicated events, e.g.: %s; %d of %d carry the same event id in every copy (a downstream consumer can drop them by id)",
			firstFew(tl.dupKeys, 10), sameID, len(tl.dupKeys))
	}
	if sink.nbad > 0 {
		t.Errorf("%d sink lines could not be read (torn writes?), e.g. %q", sink.nbad, sink.bad)
	}
	if len(tl.unexpected) > 0 {
		t.Errorf("%d events in the sink that the test never had acked: %s", len(tl.unexpected), firstFew(tl.unexpected, 10))
	}
	if tl.duplicates > dupBound {
		t.Errorf("%d duplicate copies, more than the %d the batches in flight at %d kills can explain", tl.duplicates, dupBound, kills)
	}
}
