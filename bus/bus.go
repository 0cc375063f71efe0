package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-router/herald/config"
)

// Bus is a connection to the NATS system, with the embedded server when
// herald runs one.
type Bus struct {
	Server *server.Server // nil when connected to an external system
	NC     *nats.Conn
	JS     jetstream.JetStream
	cfg    config.Bus
	log    *slog.Logger
	// budgets are the work streams' max_bytes under max_store that
	// Declare set, by stream; nil without the embedded server.
	budgets atomic.Pointer[map[string]int64]
}

// Open starts the embedded server (when cfg.URLs is empty) and connects.
func Open(ctx context.Context, cfg config.Bus, log *slog.Logger) (*Bus, error) {
	b := &Bus{cfg: cfg, log: log}
	var opts []nats.Option
	opts = append(opts, nats.Name("herald"), nats.MaxReconnects(-1), nats.ReconnectWait(500*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", nc.ConnectedUrl()) }))
	url := ""
	if len(cfg.URLs) == 0 {
		s, self, err := startEmbedded(cfg.Embedded, log)
		if err != nil {
			return nil, err
		}
		b.Server = s
		opts = append(opts, nats.InProcessServer(s))
		opts = append(opts, self...)
	} else {
		url = strings.Join(cfg.URLs, ",")
		auth, err := clientOptions(cfg, isLocal(cfg))
		if err != nil {
			return nil, err
		}
		opts = append(opts, auth...)
		opts = append(opts, nats.RetryOnFailedConnect(false))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		b.Close()
		if url == "" {
			return nil, fmt.Errorf("connect to the embedded nats server: %w", err)
		}
		return nil, fmt.Errorf("connect to nats %s: %w", redactedURLs(cfg.URLs), err)
	}
	b.NC = nc
	// An ack can be lost without the connection dropping: the stream's
	// leader died with the publish in flight, on another node of a
	// cluster. Without a timeout its future never resolves and the
	// publisher waits for ever; with one, Confirm publishes it again under
	// the same Nats-Msg-Id (the new leader drops it if it was stored).
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(16384), jetstream.WithPublishAsyncTimeout(pubAckTimeout))
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	b.JS = js
	return b, nil
}

// startEmbedded starts the embedded server; the options it returns let
// herald's in-process connection pass the server's auth.
func startEmbedded(e config.Embedded, log *slog.Logger) (*server.Server, []nats.Option, error) {
	if err := os.MkdirAll(e.DataDir, 0o750); err != nil {
		return nil, nil, fmt.Errorf("nats data dir: %w", err)
	}
	o := &server.Options{
		JetStream:         true,
		StoreDir:          e.DataDir,
		NoSigs:            true,
		MaxPayload:        int32(e.MaxPayload),
		JetStreamMaxStore: int64(e.MaxStore),
		// JetStream memory is only used for memory streams; herald's are files.
		JetStreamMaxMemory: 64 << 20,
	}
	if e.Listen == "" {
		o.DontListen = true
	} else {
		var err error
		if o.Host, o.Port, err = hostPort("nats listen", e.Listen); err != nil {
			return nil, nil, err
		}
	}
	self, err := applyTopology(e, o)
	if err != nil {
		return nil, nil, err
	}
	switch e.SyncInterval {
	case "":
	case "always":
		o.SyncAlways = true
	default:
		d, err := time.ParseDuration(e.SyncInterval)
		if err != nil {
			return nil, nil, fmt.Errorf("sync_interval %q: %w", e.SyncInterval, err)
		}
		o.SyncInterval = d
	}
	s, err := server.NewServer(o)
	if err != nil {
		return nil, nil, fmt.Errorf("embedded nats: %w", err)
	}
	sl := &serverLog{l: log.With("component", "nats-server"), fatal: make(chan string, 1)}
	s.SetLoggerV2(sl, false, false, false)
	go s.Start()
	// The server reports a configuration it cannot run (JetStream in a
	// cluster without routes, say) through Fatalf and then never becomes
	// ready: fail at once with its reason rather than after the timeout.
	deadline := time.Now().Add(30 * time.Second)
	for !s.ReadyForConnections(100 * time.Millisecond) {
		select {
		case reason := <-sl.fatal:
			s.Shutdown()
			return nil, nil, fmt.Errorf("embedded nats: %s", reason)
		default:
		}
		if time.Now().Before(deadline) {
			continue
		}
		s.Shutdown()
		if e.Listen != "" {
			return nil, nil, fmt.Errorf("embedded nats did not start within 30s (is %s already in use?)", e.Listen)
		}
		return nil, nil, errors.New("embedded nats did not start within 30s")
	}
	return s, self, nil
}

// ClientURL is the address other processes use to reach the embedded
// server, or "" when it does not listen.
func (b *Bus) ClientURL() string {
	if b.Server == nil || b.Server.Addr() == nil {
		return ""
	}
	return b.Server.ClientURL()
}

// Declare creates or updates every stream and the durable consumers of the
// given targets. It is idempotent; every process may call it.
//
// With the embedded server, the work streams get max_bytes budgets under
// bus.embedded.max_store (see workBudgets); without it, a work stream keeps
// the max_bytes it has, so that a process connected to another's server,
// or an operator's limits on a NATS system of their own, are not undone.
func (b *Bus) Declare(ctx context.Context, targets []string) error {
	budgets, err := b.workBudgets(ctx, 0)
	if err != nil {
		return err
	}
	for _, s := range pipelineStreams {
		sc := jetstream.StreamConfig{
			Name:       s.name,
			Subjects:   s.subjects,
			Retention:  s.retention,
			Storage:    jetstream.FileStorage,
			Replicas:   b.cfg.Replicas,
			Placement:  Placement(b.cfg),
			Duplicates: b.cfg.Duplicates.D(),
			MaxAge:     s.maxAge,
			Discard:    jetstream.DiscardOld,
		}
		if s.retention == jetstream.WorkQueuePolicy {
			// A full work stream must refuse new messages, never drop
			// accepted ones (lowering max_bytes drops nothing either).
			sc.Discard = jetstream.DiscardNew
			sc.MaxBytes = budgets[s.name]
		}
		if ms := b.embeddedMaxStore(); ms > 0 {
			// The retained streams get their part of the headroom the
			// budgets leave: without a bound, receipts of a steady tracked
			// load (an hour of them) or a flood of dead letters would fill
			// max_store and stop every write, leases included.
			switch s.name {
			case StreamDLQ:
				// Full: a dead letter is refused and its batch held, never
				// an old dead letter dropped.
				sc.MaxBytes, sc.Discard = DLQBytes(ms), jetstream.DiscardNew
			case StreamReceipts:
				// Full: the oldest receipts go; a client that is connected
				// has had them already.
				sc.MaxBytes = ReceiptBytes(ms)
			}
		}
		if s.name == StreamRaw {
			// A hub takes over the raw records its edges stored.
			sc.Sources = edgeSources(b.cfg.EdgeDomains)
		}
		if err := b.whileClusterForms(ctx, func(ctx context.Context) error {
			_, err := b.JS.CreateOrUpdateStream(ctx, sc)
			return err
		}); err != nil {
			return fmt.Errorf("declare stream %s: %w", s.name, err)
		}
	}
	if b.Server != nil {
		b.budgets.Store(&budgets)
	}
	forward := len(b.cfg.URLs) == 0 && b.cfg.Embedded.Leafnode.Forward
	for _, c := range pipelineConsumers(targets) {
		if forward && c.durable == ConsumerClassifier {
			// The raw stream is a work queue: the hub's forwarding
			// consumer and a classifier here cannot both take from it.
			continue
		}
		if err := b.whileClusterForms(ctx, func(ctx context.Context) error {
			_, err := b.consumer(ctx, c)
			return err
		}); err != nil {
			return err
		}
	}
	if forward {
		return b.declareForwarding(ctx)
	}
	return nil
}

// ---- Work-stream budgets ----
//
// JetStream refuses every write to a file stream once the server's store
// is over max_store: not only the pipeline's, but a sink's lease renewal
// (a key-value write) too. A stage stores its output before its input is
// deleted, and a record grows two- to threefold once classified, so the
// stages moving the raw records on may take the store's last byte even
// when the receivers stopped well below the limit (max_store 128 MiB, a
// file sink down: 32 MiB left in HERALD_RAW became 96 MiB in
// HERALD_TARGETS). The sink then loses its lease, cannot write it again,
// and nothing ever drains the store. No reserve kept by the receivers
// prevents that (the stages convert whatever is queued), and a holder may
// not keep a lease it cannot renew (once the key expired, another process
// may take it as soon as a byte is free: two writers). So each work
// stream gets a share of max_store as its max_bytes, and the shares leave
// room for everything else: a full work stream refuses its writers
// (receivers hold their senders, stages wait) while the key-value
// buckets, dead letters and receipts still have room, and a stage's
// output never competes with its input for the last bytes.

// budgetShares are the eighths of the budgeted store each work stream
// gets. With fused stages (the default) only HERALD_RAW and
// HERALD_TARGETS fill while a sink is down: 3/4 of the budget buffers an
// outage; the two others fill when stages run apart or applications
// publish events faster than they are resolved.
var budgetShares = map[string]int64{StreamRaw: 3, StreamEvents: 1, StreamResolved: 1, StreamTargets: 3}

// StoreHeadroom is what the work-stream budgets leave of max_store for
// the rest (lease and other key-value buckets, dead letters, receipts, an
// archive without max_bytes): 1/16 of it, at least 8 MiB, at most 1/4.
func StoreHeadroom(maxStore int64) int64 {
	return min(max(maxStore/16, 8<<20), maxStore/4)
}

// DLQBytes is HERALD_DLQ's max_bytes under max_store: half the headroom.
func DLQBytes(maxStore int64) int64 { return StoreHeadroom(maxStore) / 2 }

// ReceiptBytes is HERALD_RECEIPTS' max_bytes under max_store: a quarter
// of the headroom.
func ReceiptBytes(maxStore int64) int64 { return StoreHeadroom(maxStore) / 4 }

// embeddedMaxStore is the embedded server's JetStream max_store; 0 without
// one (an external system keeps the limits its operator set).
func (b *Bus) embeddedMaxStore() int64 {
	if b.Server == nil {
		return 0
	}
	if c := b.Server.JetStreamConfig(); c != nil && c.MaxStore > 0 {
		return c.MaxStore
	}
	return 0
}

// minBudget is the least budget of a work stream: a few of the largest
// messages a stage writes (four times batch.max_bytes, 1 MiB by default).
// A smaller store gets no budgets at all, as before.
const minBudget = 4 << 20

// WorkBudgets divides maxStore, less StoreHeadroom and reserved (the
// max_bytes of other streams, which JetStream reserves against
// max_store), among the work streams. It returns nil when a budget would
// be below minBudget: the store is too small to divide.
func WorkBudgets(maxStore, reserved int64) map[string]int64 {
	avail := maxStore - StoreHeadroom(maxStore) - max(reserved, 0)
	out := map[string]int64{}
	for name, eighths := range budgetShares {
		out[name] = avail / 8 * eighths
		if out[name] < minBudget {
			return nil
		}
	}
	return out
}

// workBudgets returns the max_bytes of each work stream: herald's budgets
// with the embedded server, leaving extra bytes unreserved besides what
// other streams reserve now; the streams' present max_bytes otherwise.
func (b *Bus) workBudgets(ctx context.Context, extra int64) (map[string]int64, error) {
	present := map[string]int64{}
	for name := range budgetShares {
		var sc *jetstream.StreamInfo
		err := b.whileClusterForms(ctx, func(ctx context.Context) error {
			s, err := b.JS.Stream(ctx, name)
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				return nil
			}
			if err == nil {
				sc = s.CachedInfo()
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("declare stream %s: %w", name, err)
		}
		if sc != nil && sc.Config.MaxBytes > 0 {
			present[name] = sc.Config.MaxBytes
		}
	}
	if b.Server == nil {
		return present, nil
	}
	c := b.Server.JetStreamConfig()
	_, reserved, err := b.Server.JetStreamReservedResources()
	if c == nil || c.MaxStore <= 0 || err != nil {
		return present, nil
	}
	for _, n := range present {
		reserved -= n // the work streams' own reservations are replaced
	}
	budgets := WorkBudgets(c.MaxStore, reserved+extra)
	if budgets == nil {
		b.log.Warn("bus.embedded.max_store is too small to give each work stream a budget: a full store may stop the pipeline until space is freed",
			"max_store", c.MaxStore, "reserved_by_other_streams", reserved+extra)
		return map[string]int64{}, nil
	}
	return budgets, nil
}

// makeRoom lowers the work streams' budgets so that extra more bytes of
// max_store can be reserved by a stream declared after them (the
// archive). Lowering max_bytes drops nothing: the work streams discard
// new messages, never old ones.
func (b *Bus) makeRoom(ctx context.Context, extra int64) error {
	if b.Server == nil || extra <= 0 {
		return nil
	}
	budgets, err := b.workBudgets(ctx, extra)
	if err != nil {
		return err
	}
	for name := range budgetShares {
		err := b.whileClusterForms(ctx, func(ctx context.Context) error {
			s, err := b.JS.Stream(ctx, name)
			if err != nil {
				return err
			}
			sc := s.CachedInfo().Config
			if sc.MaxBytes == budgets[name] || (sc.MaxBytes <= 0 && budgets[name] == 0) {
				return nil
			}
			sc.MaxBytes = budgets[name]
			_, err = b.JS.UpdateStream(ctx, sc)
			return err
		})
		if err != nil {
			return fmt.Errorf("budget of stream %s: %w", name, err)
		}
	}
	b.budgets.Store(&budgets)
	return nil
}

// Budget returns the stream a subject of the pipeline is stored in and
// the max_bytes herald gave it under bus.embedded.max_store; 0 when it has
// none (no embedded server, or not a work stream).
func (b *Bus) Budget(subject string) (stream string, maxBytes int64) {
	switch {
	case strings.HasPrefix(subject, SubjectRawPrefix):
		stream = StreamRaw
	case strings.HasPrefix(subject, SubjectEventsPrefix):
		stream = StreamEvents
	case subject == SubjectResolved:
		stream = StreamResolved
	case strings.HasPrefix(subject, SubjectTargetPrefix):
		stream = StreamTargets
	default:
		return "", 0
	}
	if b == nil || b.Server == nil {
		return stream, 0
	}
	if m := b.budgets.Load(); m != nil {
		return stream, (*m)[stream]
	}
	return stream, 0
}

// MaxAckPending bounds the messages one consumer has in flight. Batches of
// events make a message up to about 1 MiB after classification, so this is
// memory: 64 keeps a stage's in-flight data in the tens of MiB, and more
// gave no speed in the batching measurements.
const MaxAckPending = 64

func (b *Bus) consumer(ctx context.Context, c consumerSpec) (jetstream.Consumer, error) {
	cons, err := b.JS.CreateOrUpdateConsumer(ctx, c.stream, jetstream.ConsumerConfig{
		Durable:       c.durable,
		FilterSubject: c.filter,
		AckPolicy:     jetstream.AckExplicitPolicy, // never AckAll: it loses what a dead process held
		AckWait:       b.cfg.AckWait.D(),
		// Unlimited here: the stage itself dead-letters after
		// bus.max_deliver, so no message is ever left silently undelivered.
		MaxDeliver:    -1,
		MaxAckPending: MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("declare consumer %s on %s: %w", c.durable, c.stream, err)
	}
	return cons, nil
}

// Consumer returns a durable consumer that Declare created.
func (b *Bus) Consumer(ctx context.Context, stream, durable string) (jetstream.Consumer, error) {
	cons, err := b.JS.Consumer(ctx, stream, durable)
	if err != nil {
		return nil, fmt.Errorf("consumer %s on %s: %w", durable, stream, err)
	}
	return cons, nil
}

// Close drains the connection and shuts the embedded server down.
func (b *Bus) Close() {
	if b.NC != nil {
		_ = b.NC.Drain()
		// Drain is asynchronous; wait for it so pending acks reach the server.
		deadline := time.Now().Add(5 * time.Second)
		for !b.NC.IsClosed() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		b.NC.Close()
	}
	if b.Server != nil {
		b.Server.Shutdown()
		b.Server.WaitForShutdown()
	}
}

// serverLog sends nats-server's log lines to slog, and the first fatal one
// to fatal as well.
type serverLog struct {
	l     *slog.Logger
	fatal chan string
}

func (s *serverLog) Noticef(f string, a ...any) { s.l.Debug(fmt.Sprintf(f, a...)) }
func (s *serverLog) Warnf(f string, a ...any)   { s.l.Warn(fmt.Sprintf(f, a...)) }
func (s *serverLog) Fatalf(f string, a ...any) {
	msg := fmt.Sprintf(f, a...)
	s.l.Error(msg)
	select {
	case s.fatal <- msg:
	default:
	}
}
func (s *serverLog) Errorf(f string, a ...any) { s.l.Error(fmt.Sprintf(f, a...)) }
func (s *serverLog) Debugf(f string, a ...any) { s.l.Debug(fmt.Sprintf(f, a...)) }
func (s *serverLog) Tracef(f string, a ...any) {}
