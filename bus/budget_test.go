package bus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/bus/bustest"
	"github.com/herald-router/herald/config"
)

func TestWorkBudgets(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name               string
		maxStore, reserved int64
		raw, events        int64 // 0: no budgets
	}{
		{"the default 10GiB leaves 640MiB and gives raw and targets 3/8 of the rest", 10 << 30, 0, (10<<30 - 640*mib) / 8 * 3, (10<<30 - 640*mib) / 8},
		{"128MiB leaves 8MiB", 128 * mib, 0, 45 * mib, 15 * mib},
		{"what other streams reserve is not divided", 128 * mib, 40 * mib, 30 * mib, 10 * mib},
		{"a store too small to divide gets no budgets", 2 * mib, 0, 0, 0},
		{"other streams reserving nearly all of it leave no budgets", 128 * mib, 100 * mib, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bus.WorkBudgets(tc.maxStore, tc.reserved)
			if tc.raw == 0 {
				if b != nil {
					t.Fatalf("WorkBudgets = %v, want none", b)
				}
				return
			}
			if b[bus.StreamRaw] != tc.raw || b[bus.StreamTargets] != tc.raw || b[bus.StreamEvents] != tc.events || b[bus.StreamResolved] != tc.events {
				t.Errorf("WorkBudgets = %v, want raw and targets %d, events and resolved %d", b, tc.raw, tc.events)
			}
			var sum int64
			for _, n := range b {
				sum += n
			}
			if room := tc.maxStore - tc.reserved - sum; room < bus.StoreHeadroom(tc.maxStore) {
				t.Errorf("the budgets leave %d bytes, want at least the headroom %d", room, bus.StoreHeadroom(tc.maxStore))
			}
		})
	}
}

// TestFullWorkStreamsLeaveRoomForLeases declares the streams under a
// max_store of 64 MiB and an archive of 16 MiB, fills every work stream
// until JetStream refuses it, and checks that a key-value write (a sink's
// lease renewal) still succeeds; a process without the embedded server
// declaring again keeps the budgets.
func TestFullWorkStreamsLeaveRoomForLeases(t *testing.T) {
	const maxStore, archive = 64 << 20, 16 << 20
	cfg := busConfig(t)
	cfg.Embedded.MaxStore = maxStore
	b := openBus(t, cfg)
	declare(t, b, 10*time.Second)
	ctx := t.Context()
	if err := b.DeclareArchive(ctx, config.Archive{MaxBytes: archive}); err != nil {
		t.Fatalf("the archive must fit beside the budgets: %v", err)
	}
	declare(t, b, 10*time.Second) // a restart or a reload: the same budgets
	want := bus.WorkBudgets(maxStore, archive+bus.DLQBytes(maxStore)+bus.ReceiptBytes(maxStore))
	for name, n := range want {
		s, err := b.JS.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.CachedInfo().Config.MaxBytes; got != n {
			t.Errorf("%s max_bytes = %d, want %d", name, got, n)
		}
		if stream, budget := b.Budget(s.CachedInfo().Config.Subjects[0]); stream != name || budget != n {
			t.Errorf("Budget(%s) = %s %d, want %s %d", s.CachedInfo().Config.Subjects[0], stream, budget, name, n)
		}
	}

	payload := []byte(strings.Repeat("x", 512<<10))
	for _, subject := range []string{bus.RawSubject("test"), bus.EventsSubject("test"), bus.SubjectResolved, bus.TargetSubject("log")} {
		for i := 0; ; i++ {
			_, err := b.JS.Publish(ctx, subject, payload)
			var api *jetstream.APIError
			if errors.As(err, &api) && api.ErrorCode == 10077 {
				break
			}
			if err != nil {
				t.Fatalf("publish %d to %s: %v", i, subject, err)
			}
			if i > maxStore/len(payload) {
				t.Fatalf("%s took more than max_store", subject)
			}
		}
	}
	kv, err := b.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "TEST_LEASES", TTL: 5 * time.Second})
	if err != nil {
		t.Fatalf("a bucket with the work streams full: %v", err)
	}
	for i := range 20 {
		if _, err := kv.Put(ctx, "sink.events", fmt.Appendf(nil, "renewal %d", i)); err != nil {
			t.Fatalf("a lease renewal with the work streams full: %v", err)
		}
	}

	// Another process, connected to this server: it does not know
	// max_store and leaves the budgets as they are.
	other := cfg
	other.URLs = []string{"nats://" + cfg.Embedded.Listen}
	ob, err := bus.Open(ctx, other, bustest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ob.Close)
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := ob.Declare(dctx, []string{"log"}); err != nil {
		t.Fatal(err)
	}
	for name, n := range want {
		s, err := b.JS.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.CachedInfo().Config.MaxBytes; got != n {
			t.Errorf("after a Declare without the embedded server, %s max_bytes = %d, want %d kept", name, got, n)
		}
	}
}

// TestDeadLettersAndReceiptsAreBoundedUnderMaxStore: the retained streams
// get their part of the headroom; a full dead-letter stream refuses new
// letters and keeps the old ones, a full receipts stream drops its oldest.
func TestDeadLettersAndReceiptsAreBoundedUnderMaxStore(t *testing.T) {
	const maxStore = 128 << 20
	cfg := busConfig(t)
	cfg.Embedded.MaxStore = maxStore
	b := openBus(t, cfg)
	declare(t, b, 10*time.Second)
	ctx := t.Context()
	for _, c := range []struct {
		stream  string
		bytes   int64
		discard jetstream.DiscardPolicy
	}{
		{bus.StreamDLQ, bus.DLQBytes(maxStore), jetstream.DiscardNew},
		{bus.StreamReceipts, bus.ReceiptBytes(maxStore), jetstream.DiscardOld},
	} {
		s, err := b.JS.Stream(ctx, c.stream)
		if err != nil {
			t.Fatal(err)
		}
		if sc := s.CachedInfo().Config; sc.MaxBytes != c.bytes || sc.Discard != c.discard {
			t.Errorf("%s: max_bytes %d, discard %v; want %d, %v", c.stream, sc.MaxBytes, sc.Discard, c.bytes, c.discard)
		}
	}

	payload := []byte(strings.Repeat("x", 256<<10))
	first, err := b.JS.Publish(ctx, bus.DLQSubject("test"), payload)
	if err != nil {
		t.Fatal(err)
	}
	refused := false
	for i := 0; i < maxStore/len(payload); i++ {
		if _, err := b.JS.Publish(ctx, bus.DLQSubject("test"), payload); err != nil {
			refused = true
			break
		}
	}
	if !refused {
		t.Fatal("the dead-letter stream took more than its bound")
	}
	s, err := b.JS.Stream(ctx, bus.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetMsg(ctx, first.Sequence); err != nil {
		t.Fatalf("the first dead letter is gone once the stream is full: %v", err)
	}
}
