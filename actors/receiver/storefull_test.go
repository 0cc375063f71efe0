package receiver_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/herald-router/herald/actors/receiver"
	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/bus/bustest"
	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/internal/metrics"
	"github.com/herald-router/herald/schemas"
)

// TestAFullStreamHoldsRecordsUntilThereIsRoom fills the raw stream to its
// max_bytes, adds records, and checks that the batcher holds them (not
// confirmed, not dropped, StoreFull and herald_receiver_store_full set),
// then stores every one once the stream is emptied, and clears the state.
func TestAFullStreamHoldsRecordsUntilThereIsRoom(t *testing.T) {
	b := bustest.Open(t)
	ctx := t.Context()
	st, err := b.JS.Stream(ctx, bus.StreamRaw)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.MaxBytes = 64 << 10
	if _, err := b.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	bt := receiver.NewBatcher(b, bus.RawSubject("test"), 10, 4<<10, time.Millisecond, m.Stage("receiver.test"), bustest.Logger(t))
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = bt.Close(cctx)
	})
	gauge := m.ReceiverStoreFull.WithLabelValues("test")

	var confirmed, failed atomic.Int64
	add := func(i int) {
		ev := &schemas.Event{Raw: []byte(fmt.Sprintf("record %06d %s", i, strings.Repeat("x", 200)))}
		if !bt.AddConfirmed(ev, func(err error) {
			if err != nil {
				failed.Add(1)
				return
			}
			confirmed.Add(1)
		}) {
			t.Errorf("record %d refused: the batcher is open", i)
		}
	}
	// Fill the stream: adding blocks once the batcher holds what does not
	// fit, so add from a goroutine.
	const n = 600 // about 130 KiB, twice the stream's limit
	added := make(chan struct{})
	go func() {
		defer close(added)
		for i := range n {
			add(i)
		}
	}()
	bustest.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		if err := bt.StoreFull(); !errors.Is(err, receiver.ErrStoreFull) {
			return fmt.Errorf("StoreFull = %v, want ErrStoreFull", err)
		}
		if v := testutil.ToFloat64(gauge); v != 1 {
			return fmt.Errorf("herald_receiver_store_full = %v", v)
		}
		return nil
	})
	if err := bt.StoreFull(); !strings.Contains(err.Error(), "max_bytes or max_msgs of the stream of herald.raw.test") {
		t.Errorf("StoreFull should name the limit: %v", err)
	}
	if c, f := confirmed.Load(), failed.Load(); c >= n || f > 0 {
		t.Fatalf("while the stream is full: %d confirmed, %d failed of %d; want some held and none failed", c, f, n)
	}

	// Make room as the classifier does: take and delete what is stored.
	cons, err := b.Consumer(ctx, bus.StreamRaw, bus.ConsumerClassifier)
	if err != nil {
		t.Fatal(err)
	}
	stored := 0
	bustest.Eventually(t, 30*time.Second, 10*time.Millisecond, func() error {
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			return err
		}
		for msg := range batch.Messages() {
			batch, err := bus.Decode(msg)
			if err != nil {
				return err
			}
			stored += len(batch.Events)
			_ = msg.Ack()
		}
		if stored < n || confirmed.Load() < n {
			return fmt.Errorf("%d of %d records stored, %d confirmed", stored, n, confirmed.Load())
		}
		return nil
	})
	<-added
	if stored != n || failed.Load() != 0 {
		t.Errorf("stored %d records of %d (%d failed): want each exactly once", stored, n, failed.Load())
	}
	if err := bt.StoreFull(); err != nil {
		t.Errorf("StoreFull after the drain: %v", err)
	}
	if v := testutil.ToFloat64(gauge); v != 0 {
		t.Errorf("herald_receiver_store_full after the drain = %v, want 0", v)
	}
}

// TestCloseGivesUpOnRecordsAFullStoreHolds checks that Close is bounded by
// its context while the store is full, and fails the held records.
func TestCloseGivesUpOnRecordsAFullStoreHolds(t *testing.T) {
	b := bustest.Open(t)
	ctx := t.Context()
	st, err := b.JS.Stream(ctx, bus.StreamRaw)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.MaxBytes = 16 << 10
	if _, err := b.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	bt := receiver.NewBatcher(b, bus.RawSubject("test"), 10, 4<<10, time.Millisecond, metrics.New().Stage("receiver.test"), bustest.Logger(t))
	var failed atomic.Int64
	go func() {
		for i := range 400 {
			ev := &schemas.Event{Raw: []byte(fmt.Sprintf("record %06d %s", i, strings.Repeat("x", 200)))}
			if !bt.AddConfirmed(ev, func(err error) {
				if err != nil {
					failed.Add(1)
				}
			}) {
				return
			}
		}
	}()
	bustest.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		if err := bt.StoreFull(); err == nil {
			return errors.New("the store is not full yet")
		}
		return nil
	})
	cctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := bt.Close(cctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close = %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %s with a 300ms context", d)
	}
	if failed.Load() == 0 {
		t.Error("the held records were not reported failed")
	}
}

// TestARawStreamAtItsBudgetNamesItsShareOfMaxStore fills the raw stream to
// the budget herald gave it under bus.embedded.max_store, and checks that
// the held records' reason names that share, so an operator knows which
// key to raise.
func TestARawStreamAtItsBudgetNamesItsShareOfMaxStore(t *testing.T) {
	cfg := config.Default().Bus
	cfg.Embedded.Listen = ""
	cfg.Embedded.DataDir = t.TempDir()
	cfg.Embedded.MaxStore = 64 << 20
	b, err := bus.Open(t.Context(), cfg, bustest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	if err := b.Declare(t.Context(), []string{"log"}); err != nil {
		t.Fatal(err)
	}
	// Large messages first, then small ones to take what is left.
	for _, size := range []int{256 << 10, 1 << 10} {
		payload := []byte(strings.Repeat("x", size))
		for i := 0; ; i++ {
			if _, err := b.JS.Publish(t.Context(), bus.RawSubject("filler"), payload); err != nil {
				if !receiver.IsStoreFull(err) {
					t.Fatalf("publish %d: %v", i, err)
				}
				break
			}
		}
	}
	bt := receiver.NewBatcher(b, bus.RawSubject("test"), 10, 4<<10, time.Millisecond, metrics.New().Stage("receiver.test"), bustest.Logger(t))
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_ = bt.Close(cctx)
	})
	bt.Add(&schemas.Event{Raw: []byte(strings.Repeat("r", 8<<10))})
	_, budget := b.Budget(bus.RawSubject("test"))
	want := fmt.Sprintf("HERALD_RAW's share of bus.embedded.max_store: %d of %d bytes", budget, 64<<20)
	bustest.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		if err := bt.StoreFull(); err == nil || !strings.Contains(err.Error(), want) {
			return fmt.Errorf("StoreFull = %v, want it to say %q", err, want)
		}
		return nil
	})
}
