package sink_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/actors/sink"
	"github.com/herald-router/herald/actors/stage"
	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/bus/bustest"
	"github.com/herald-router/herald/internal/metrics"
	"github.com/herald-router/herald/schemas"
)

// memory is a test provider: a real sink cannot be made to panic or fail on
// cue, so this one does it on the events a test names. It commits each event
// as it is written (Committed), like a database with autocommit.
type memory struct {
	mu      sync.Mutex
	written []string
	// panicOnce panics the first time it sees each of these messages.
	panicOnce map[string]bool
	// panicAlways panics every time.
	panicAlways map[string]bool
	// failOnce returns a retryable error the first time it sees these.
	failOnce map[string]bool
	seen     map[string]int
	// down makes every Do fail as an unreachable destination would.
	down     atomic.Bool
	attempts atomic.Int64
}

func (m *memory) Begin(context.Context) error { return nil }
func (m *memory) Do(_ context.Context, ev *schemas.Event) (sink.Commit, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seen == nil {
		m.seen = map[string]int{}
	}
	m.seen[ev.Message]++
	m.attempts.Add(1)
	if m.down.Load() {
		return 0, errors.New("destination unreachable")
	}
	if m.panicAlways[ev.Message] || m.panicOnce[ev.Message] && m.seen[ev.Message] == 1 {
		panic("provider blew up on " + ev.Message)
	}
	if m.failOnce[ev.Message] && m.seen[ev.Message] == 1 {
		return 0, errors.New("sink unreachable")
	}
	m.written = append(m.written, ev.Message)
	return sink.Committed, nil
}
func (m *memory) End(context.Context) error   { return nil }
func (m *memory) Close(context.Context) error { return nil }

func (m *memory) snapshot() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.written...)
}

type rig struct {
	bus     *bus.Bus
	metrics *metrics.Metrics
	stage   *metrics.Stage
	execs   []*sink.Executor
}

// startChain runs a target "log" whose fail-over chain is ps, each provider
// behind its own supervised sink actor, as herald wires them.
func startChain(t *testing.T, ps ...sink.Provider) *rig {
	t.Helper()
	b := bustest.Open(t, "log")
	m := metrics.New()
	st := m.Stage("target.log")
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return bustest.Logger(t) }))
	r := &rig{bus: b, metrics: m, stage: st}
	for i, p := range ps {
		name := fmt.Sprintf("s%d", i)
		e := &sink.Executor{Name: name, Provider: p, Timeout: 5 * time.Second,
			BackoffMin: 50 * time.Millisecond, BackoffMax: 300 * time.Millisecond,
			Suspended: m.SinkSuspended.WithLabelValues(name), Committed: m.SinkCommitted.WithLabelValues(name),
			Restarts: m.SinkRestarts.WithLabelValues(name), Log: bustest.Logger(t)}
		if err := e.Start(sys); err != nil {
			t.Fatal(err)
		}
		r.execs = append(r.execs, e)
	}
	cons, err := b.Consumer(context.Background(), bus.StreamTargets, bus.SinkConsumer("log"))
	if err != nil {
		t.Fatal(err)
	}
	c := &sink.Chain{Target: "log", Sinks: r.execs, Bus: b, MaxBytes: 1 << 20, MaxDeliver: 5,
		AckWait: 2 * time.Second, Metrics: st, Backlog: m.TargetBacklog.WithLabelValues("log"), Consumer: cons, Log: bustest.Logger(t)}
	run := &stage.Runner{Name: "target.log", Consumers: []jetstream.Consumer{cons}, Handler: c, Metrics: st,
		Log: bustest.Logger(t), OnFatal: func(err error) { t.Errorf("stage died: %v", err) }}
	if err := run.Start(sys); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		run.Stop()
		for _, e := range r.execs {
			e.Stop(context.Background())
		}
		sys.Shutdown()
	})
	return r
}

func (r *rig) suspended(name string) float64 {
	return testutil.ToFloat64(r.metrics.SinkSuspended.WithLabelValues(name))
}

func (r *rig) publish(t *testing.T, batchID string, msgs ...string) {
	t.Helper()
	evs := make([]*schemas.Event, len(msgs))
	for i, m := range msgs {
		evs[i] = &schemas.Event{Id: batchID + "-" + strconv.Itoa(i), Message: m}
	}
	out, err := bus.EncodeBatches(bus.TargetSubject("log"), batchID, evs, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range out {
		if err := r.bus.Publish(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
}

func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%02d", prefix, i)
	}
	return out
}

func TestAPanickingProviderIsRestartedAndItsBatchRedelivered(t *testing.T) {
	msgs := numbered("e", 10)
	p := &memory{panicOnce: map[string]bool{msgs[5]: true}}
	r := startChain(t, p)
	r.publish(t, "b1", msgs...)

	bustest.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		if got := p.snapshot(); len(got) < 10 {
			return fmt.Errorf("%d of 10 events written: %v", len(got), got)
		}
		return nil
	})
	if n := testutil.ToFloat64(r.metrics.SinkRestarts.WithLabelValues("s0")); n != 1 {
		t.Errorf("sink actor restarts = %v, want 1", n)
	}
	// Events committed before the panic (e00..e04 commit one by one) may be
	// written again on redelivery; none may be missing.
	count := map[string]int{}
	for _, w := range p.snapshot() {
		count[w]++
	}
	for _, m := range msgs {
		if count[m] == 0 {
			t.Errorf("%s was lost", m)
		}
	}
	if p.seen[msgs[5]] < 2 {
		t.Errorf("the event that panicked was tried %d times, want it tried again", p.seen[msgs[5]])
	}
}

func TestAnEventThatAlwaysPanicsIsDeadLetteredAndOthersFlow(t *testing.T) {
	p := &memory{panicAlways: map[string]bool{"poison": true}}
	r := startChain(t, p)
	r.publish(t, "bad", "p0", "poison")
	r.publish(t, "good", numbered("g", 5)...)

	dlq, err := r.bus.JS.Stream(context.Background(), bus.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
		info, err := dlq.Info(context.Background())
		if err != nil {
			return err
		}
		if info.State.Msgs != 1 {
			return fmt.Errorf("dead letters: %d, want 1", info.State.Msgs)
		}
		return nil
	})
	msg, err := dlq.GetLastMsgForSubject(context.Background(), bus.DLQSubject("target.log"))
	if err != nil {
		t.Fatal(err)
	}
	if reason := msg.Header.Get(bus.HeaderDLQReason); reason != "sink_panic" {
		t.Errorf("dead-letter reason = %q, want sink_panic", reason)
	}
	if origin := msg.Header.Get(bus.HeaderDLQSubject); origin != bus.TargetSubject("log") {
		t.Errorf("dead-letter origin = %q", origin)
	}
	bustest.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		got := map[string]bool{}
		for _, w := range p.snapshot() {
			got[w] = true
		}
		for _, g := range numbered("g", 5) {
			if !got[g] {
				return fmt.Errorf("%s of the good batch not written yet", g)
			}
		}
		return nil
	})
}

func TestAPartialCommitRequeuesOnlyTheUncommittedTail(t *testing.T) {
	msgs := numbered("t", 8)
	p := &memory{failOnce: map[string]bool{msgs[3]: true}}
	r := startChain(t, p)
	r.publish(t, "b1", msgs...)

	bustest.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		if got := p.snapshot(); len(got) < 8 {
			return fmt.Errorf("%d of 8 events written: %v", len(got), got)
		}
		return nil
	})
	got := p.snapshot()
	if len(got) != 8 {
		t.Fatalf("written %v: committed events must not be written twice", got)
	}
	for i, m := range msgs {
		if got[i] != m {
			t.Fatalf("written %v, want %v in order", got, msgs)
		}
	}
	if v := r.suspended("s0"); v != 0 {
		t.Errorf("sink still marked suspended after it recovered")
	}
}

func TestALongOutageDeadLettersNothingAndKeepsOrder(t *testing.T) {
	p := &memory{}
	p.down.Store(true)
	r := startChain(t, p)
	var want []string
	for i := range 3 {
		msgs := numbered(fmt.Sprintf("b%d-", i), 4)
		want = append(want, msgs...)
		r.publish(t, fmt.Sprintf("batch-%d", i), msgs...)
	}
	// More failed attempts than max_deliver (5) allows deliveries, and
	// longer than the ack wait (2 s): a suspended sink must hold its
	// batches, not let them be redelivered into the dead-letter stream.
	bustest.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
		if n := p.attempts.Load(); n < 8 {
			return fmt.Errorf("%d attempts against the down destination so far", n)
		}
		if v := r.suspended("s0"); v != 1 {
			return fmt.Errorf("suspended gauge = %v", v)
		}
		return nil
	})
	p.down.Store(false)
	bustest.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		if got := p.snapshot(); len(got) < len(want) {
			return fmt.Errorf("%d of %d written", len(got), len(want))
		}
		return nil
	})
	if got := p.snapshot(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("written %v, want %v: in order, exactly once", got, want)
	}
	// A batch already on its way when the consumer paused may come back
	// once; the outage's length must not add deliveries beyond that.
	if n := testutil.ToFloat64(r.stage.Redelivered); n > 3 {
		t.Errorf("%v redeliveries during the outage, want at most one per batch", n)
	}
	dlq, _ := r.bus.JS.Stream(context.Background(), bus.StreamDLQ)
	if info, _ := dlq.Info(context.Background()); info.State.Msgs != 0 {
		t.Errorf("%d dead letters after an outage, want 0", info.State.Msgs)
	}
	if v := r.suspended("s0"); v != 0 {
		t.Error("sink still marked suspended after it recovered")
	}
}

func TestAFailingSinkHandsItsEventsToTheNextOfTheChainAndTakesOverWhenRevived(t *testing.T) {
	a, b := &memory{}, &memory{}
	r := startChain(t, a, b)
	r.publish(t, "first", numbered("f", 3)...)
	bustest.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := len(a.snapshot()); n != 3 {
			return fmt.Errorf("A holds %d of 3", n)
		}
		return nil
	})
	a.down.Store(true)
	r.publish(t, "during", numbered("d", 4)...)
	bustest.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := len(b.snapshot()); n != 4 {
			return fmt.Errorf("B holds %d of 4 while A is down", n)
		}
		return nil
	})
	a.down.Store(false)
	// Once A's back-off has passed, batches start at A again.
	bustest.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		if !r.execs[0].Available() {
			return fmt.Errorf("A's back-off has not passed yet")
		}
		return nil
	})
	r.publish(t, "after", numbered("a", 3)...)
	bustest.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		got := strings.Join(a.snapshot(), ",")
		if !strings.Contains(got, "a00,a01,a02") {
			return fmt.Errorf("A holds %s", got)
		}
		return nil
	})
	if got := strings.Join(b.snapshot(), ","); got != "d00,d01,d02,d03" {
		t.Errorf("B holds %s, want exactly the events of A's outage, in order", got)
	}
	for _, m := range a.snapshot() {
		if strings.HasPrefix(m, "d") {
			t.Errorf("%s written by both sinks", m)
		}
	}
}

func TestWhenEverySinkOfAChainIsDownEventsWaitAndNothingIsDropped(t *testing.T) {
	a, b := &memory{}, &memory{}
	a.down.Store(true)
	b.down.Store(true)
	r := startChain(t, a, b)
	r.publish(t, "x", numbered("x", 5)...)
	bustest.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		if a.attempts.Load() < 3 || b.attempts.Load() < 3 {
			return fmt.Errorf("attempts A %d, B %d", a.attempts.Load(), b.attempts.Load())
		}
		return nil
	})
	b.down.Store(false)
	bustest.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		if got := strings.Join(b.snapshot(), ","); got != "x00,x01,x02,x03,x04" {
			return fmt.Errorf("B holds %s", got)
		}
		return nil
	})
	if len(a.snapshot()) != 0 {
		t.Errorf("A wrote %v while down", a.snapshot())
	}
}

func TestTrackedEventsGetOneReceiptPerCopy(t *testing.T) {
	p := &memory{failOnce: map[string]bool{"t01": true}}
	r := startChain(t, p)
	evs := []*schemas.Event{
		{Id: "E0", Message: "t00", Track: "herald.receipts.app1"},
		{Id: "E1", Message: "t01", Track: "herald.receipts.app1"},
		{Id: "E2", Message: "t02"}, // untracked: no receipt
	}
	msgs, err := bus.EncodeBatches(bus.TargetSubject("log"), "tracked", evs, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.bus.Publish(context.Background(), msgs[0]); err != nil {
		t.Fatal(err)
	}
	st, err := r.bus.JS.Stream(context.Background(), bus.StreamReceipts)
	if err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		info, err := st.Info(context.Background())
		if err != nil {
			return err
		}
		// E0's receipt goes out with the part written first, E1's with
		// the requeued rest: a message each.
		if info.State.Msgs < 2 || len(p.snapshot()) < 3 {
			return fmt.Errorf("%d receipt messages, %d events written", info.State.Msgs, len(p.snapshot()))
		}
		return nil
	})
	info, _ := st.Info(context.Background())
	got := map[string]bool{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		var rb schemas.ReceiptBatch
		if m.Header.Get(bus.HeaderEncoding) != bus.EncodingReceipts || m.Subject != "herald.receipts.app1" {
			t.Errorf("message %d on %s encoded %q: want a receipt batch", seq, m.Subject, m.Header.Get(bus.HeaderEncoding))
		}
		if err := proto.Unmarshal(m.Data, &rb); err != nil {
			t.Fatal(err)
		}
		for _, rc := range rb.Receipts {
			key := rc.EventId + ":" + rc.Kind.String() + ":" + rc.Target + ":" + rc.Sink
			if got[key] {
				t.Errorf("receipt %s reported twice", key)
			}
			got[key] = true
		}
	}
	// E1 failed once (retryable) and was written on the retry: still one
	// COMMITTED receipt each, none for the untracked event.
	for _, want := range []string{"E0:COMMITTED:log:s0", "E1:COMMITTED:log:s0"} {
		if !got[want] {
			t.Errorf("missing receipt %s; got %v", want, got)
		}
	}
	if len(got) != 2 {
		t.Errorf("receipts %v, want exactly two", got)
	}
}

func TestABatchDeadLetteredWholeReportsItsTrackedCopiesFailedInOneMessage(t *testing.T) {
	r := startChain(t, &memory{})
	evs := []*schemas.Event{
		{Id: "F0", Message: "f00", Track: "herald.receipts.app2"},
		{Id: "F1", Message: "f01"}, // untracked: no receipt
		{Id: "F2", Message: "f02", Track: "herald.receipts.app2"},
	}
	msgs, err := bus.EncodeBatches(bus.TargetSubject("log"), "stray", evs, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	msgs[0].Header.Set(bus.HeaderSink, "gone") // not in the chain: dead-lettered whole
	if err := r.bus.Publish(context.Background(), msgs[0]); err != nil {
		t.Fatal(err)
	}
	st, err := r.bus.JS.Stream(context.Background(), bus.StreamReceipts)
	if err != nil {
		t.Fatal(err)
	}
	var m *jetstream.RawStreamMsg
	bustest.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		m, err = st.GetLastMsgForSubject(context.Background(), "herald.receipts.app2")
		return err
	})
	var rb schemas.ReceiptBatch
	if err := proto.Unmarshal(m.Data, &rb); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, rc := range rb.Receipts {
		got = append(got, rc.EventId+":"+rc.Kind.String()+":"+rc.Target+":"+rc.Reason)
	}
	if strings.Join(got, ",") != "F0:FAILED:log:unknown_sink,F2:FAILED:log:unknown_sink" {
		t.Errorf("receipts %v", got)
	}
	if info, _ := st.Info(context.Background()); info.State.Msgs != 1 {
		t.Errorf("%d receipt messages for one dead-lettered batch, want 1", info.State.Msgs)
	}
}
