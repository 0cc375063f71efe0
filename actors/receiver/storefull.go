package receiver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-router/herald/bus"
)

// JetStream's codes for a publish refused for lack of space. The server
// sends them as API errors; nats.go names none of them.
const (
	// codeInsufficientResources: the server's store limit is reached
	// (bus.embedded.max_store for the embedded server).
	codeInsufficientResources jetstream.ErrorCode = 10023
	// codeStorageExceeded and codeAccountExceeded: the account's storage
	// limit is reached.
	codeStorageExceeded jetstream.ErrorCode = 10047
	codeAccountExceeded jetstream.ErrorCode = 10002
	// codeStoreFailed carries the store's own error as its description; a
	// stream at its max_bytes or max_msgs with the discard-new policy
	// (herald's work streams) answers it.
	codeStoreFailed jetstream.ErrorCode = 10077
)

// RejectStoreFull counts what a receiver refused because the store is
// full (HTTP posts answered 503).
const RejectStoreFull = "store_full"

// ErrStoreFull is wrapped by the errors of records JetStream refused for
// lack of space: the server's or account's store limit, or a stream's
// own limit, was reached. It is a temporary condition: the records are
// held (or their senders refused) until the pipeline drains and makes room.
var ErrStoreFull = errors.New("jetstream store full")

// storeFullError is a store-full refusal with the limit it hit.
type storeFullError struct {
	limit string // the limit in words, naming its config key when known
	cause error
}

func (e *storeFullError) Error() string {
	return fmt.Sprintf("jetstream store full (%s): %v", e.limit, e.cause)
}

func (e *storeFullError) Is(target error) bool { return target == ErrStoreFull }
func (e *storeFullError) Unwrap() error        { return e.cause }

// IsStoreFull reports whether err is JetStream refusing a message for lack
// of space, which waiting can cure.
func IsStoreFull(err error) bool {
	if errors.Is(err, ErrStoreFull) {
		return true
	}
	_, ok := storeFullCode(err)
	return ok
}

func storeFullCode(err error) (jetstream.ErrorCode, bool) {
	var api *jetstream.APIError
	if !errors.As(err, &api) {
		return 0, false
	}
	switch api.ErrorCode {
	case codeInsufficientResources, codeStorageExceeded, codeAccountExceeded:
		return api.ErrorCode, true
	case codeStoreFailed:
		// The code is shared with errors waiting cannot cure (a message
		// too large): only the server's description tells them apart.
		switch api.Description {
		case "maximum bytes exceeded", "maximum messages exceeded":
			return api.ErrorCode, true
		}
	}
	return 0, false
}

// storeFull wraps a store-full refusal of a message to subject with the
// limit it hit, so the log line and the HTTP answer name it; other errors
// pass unchanged.
func storeFull(b *bus.Bus, subject string, err error) error {
	code, ok := storeFullCode(err)
	if !ok {
		return err
	}
	var limit string
	switch code {
	case codeInsufficientResources:
		limit = "the NATS server's JetStream max_store"
		if b != nil && b.Server != nil {
			if c := b.Server.JetStreamConfig(); c != nil {
				limit = fmt.Sprintf("bus.embedded.max_store, %d bytes", c.MaxStore)
			}
		}
	case codeStoreFailed:
		limit = "max_bytes or max_msgs of the stream of " + subject
		if share := budgetShare(b, subject); share != "" {
			limit += " (" + share + ")"
		}
	default:
		limit = "the JetStream account's storage limit"
	}
	return &storeFullError{limit: limit, cause: err}
}

// budgetShare says, when the stream of subject is at the budget herald
// gave it under bus.embedded.max_store (see bus.WorkBudgets), which share
// of max_store that is; "" when the stream has another limit (an
// operator's) or none.
func budgetShare(b *bus.Bus, subject string) string {
	stream, budget := b.Budget(subject)
	if budget <= 0 || b.Server == nil {
		return ""
	}
	c := b.Server.JetStreamConfig()
	if c == nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := b.JS.Stream(ctx, stream)
	if err != nil || s.CachedInfo().Config.MaxBytes != budget {
		return ""
	}
	return fmt.Sprintf("%s's share of bus.embedded.max_store: %d of %d bytes", stream, budget, c.MaxStore)
}

// storeGate tracks whether JetStream is refusing a receiver's records for
// lack of space, for the HTTP receiver to refuse posts at once and for
// herald_receiver_store_full. It logs when the condition starts, every
// storeFullLogEvery while it lasts and when it ends; a store at the edge
// of its limit, refusing and accepting by turns, logs at most one start
// per storeFullLogEvery.
type storeGate struct {
	receiver string
	gauge    prometheus.Gauge
	log      *slog.Logger
	// usage reads the store's use and limit; ok is false when unknown.
	usage func() (used, limit uint64, ok bool)

	mu       sync.Mutex
	since    time.Time // zero while there is room
	until    time.Time // a refusal that is not retried holds until then
	holding  int       // batches retrying until there is room
	err      error     // the last refusal
	logged   time.Time // last warning
	quiet    bool      // this episode's start was not logged
	refusals int       // since the last warning
	checked  time.Time // of the last usage reading
	room     bool      // its verdict
	used     uint64    // and its numbers
	limit    uint64
}

// admitBelow is the share of the store's limit under which a receiver
// stores records. The rest is left to the stages: each needs room for its
// output before its input is deleted, so a receiver taking every byte the
// sink frees would starve them, and a store full of records nobody can
// move on never drains. With the embedded server the raw stream's own
// budget (bus.WorkBudgets) usually stops the receivers first, and the
// stages' output streams have budgets of their own; this holds intake
// when what is outside the budgets (dead letters, receipts, an archive
// without max_bytes) fills the store.
const admitBelow = 0.9

// usageEvery bounds how often the store's usage is read.
const usageEvery = 200 * time.Millisecond

// storeUsage reads the embedded server's JetStream use and limit; with an
// external NATS system the limit is not known to a client.
func storeUsage(b *bus.Bus) func() (uint64, uint64, bool) {
	return func() (uint64, uint64, bool) {
		if b == nil || b.Server == nil {
			return 0, 0, false
		}
		v, err := b.Server.Varz(nil)
		if err != nil || v.JetStream.Stats == nil || v.JetStream.Config == nil || v.JetStream.Config.MaxStore <= 0 {
			return 0, 0, false
		}
		return v.JetStream.Stats.Store, uint64(v.JetStream.Config.MaxStore), true
	}
}

// hasRoomLocked reports whether the store is below admitBelow of its
// limit (true when the usage is unknown: then only refusals tell).
// Lock must be held.
func (g *storeGate) hasRoomLocked() bool {
	if g.usage == nil {
		return true
	}
	if now := time.Now(); now.Sub(g.checked) >= usageEvery {
		used, limit, ok := g.usage()
		g.room = !ok || float64(used) < admitBelow*float64(limit)
		g.checked, g.used, g.limit = now, used, limit
	}
	return g.room
}

// hasRoom is hasRoomLocked for a batch about to try again.
func (g *storeGate) hasRoom() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.hasRoomLocked()
}

// nearFull returns, while the store is at or above admitBelow of its
// limit, an error wrapping ErrStoreFull that says so: a receiver holds its
// batch then rather than take the room the stages need.
func (g *storeGate) nearFull() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.hasRoomLocked() {
		return nil
	}
	return &storeFullError{limit: fmt.Sprintf("bus.embedded.max_store, %d bytes", g.limit),
		cause: fmt.Errorf("%d bytes used: intake waits until the store is below %d%% of its limit", g.used, int(admitBelow*100))}
}

// storeFullLogEvery is how often a lasting store-full condition is logged
// again.
const storeFullLogEvery = 30 * time.Second

// storeProbe is how long a refusal that is not retried (an HTTP post of
// JSON events) keeps intake refused before a request may try again.
const storeProbe = time.Second

func newStoreGate(receiver string, gauge prometheus.Gauge, log *slog.Logger, usage func() (uint64, uint64, bool)) *storeGate {
	if gauge != nil {
		gauge.Set(0)
	}
	return &storeGate{receiver: receiver, gauge: gauge, log: log, usage: usage}
}

// hold records the first refusal of a batch that is then retried until
// there is room; release ends that wait.
func (g *storeGate) hold(err error) {
	g.mu.Lock()
	g.holding++
	g.noteLocked(err)
	g.mu.Unlock()
}

// again records a further refusal of a held batch.
func (g *storeGate) again(err error) {
	g.mu.Lock()
	g.noteLocked(err)
	g.mu.Unlock()
}

func (g *storeGate) release() {
	g.mu.Lock()
	g.holding--
	g.mu.Unlock()
}

// refusedOnce records a refusal whose records are not retried (their
// sender is told to retry).
func (g *storeGate) refusedOnce(err error) {
	g.mu.Lock()
	g.until = time.Now().Add(storeProbe)
	g.noteLocked(err)
	g.mu.Unlock()
}

// Lock must be held.
func (g *storeGate) noteLocked(err error) {
	now := time.Now()
	g.err = err
	g.refusals++
	if g.since.IsZero() {
		g.since = now
		if g.gauge != nil {
			g.gauge.Set(1)
		}
		g.quiet = !g.logged.IsZero() && now.Sub(g.logged) < storeFullLogEvery
		if !g.quiet {
			g.log.Warn("jetstream store full: intake held back until the pipeline drains and makes room (TCP senders wait, RELP records stay unacknowledged, HTTP posts get 503)",
				"receiver", g.receiver, "err", err)
			g.logged, g.refusals = now, 0
		}
		return
	}
	if now.Sub(g.logged) >= storeFullLogEvery {
		g.log.Warn("jetstream store still full: intake held back",
			"receiver", g.receiver, "for", now.Sub(g.since).Round(time.Second), "refusals", g.refusals, "err", err)
		g.logged, g.refusals, g.quiet = now, 0, false
	}
}

// stored records a message JetStream accepted: once no batch waits any
// more, there is room again.
func (g *storeGate) stored() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.since.IsZero() || g.holding > 0 {
		return
	}
	if !g.quiet {
		g.log.Info("jetstream store has room again: intake resumed",
			"receiver", g.receiver, "after", time.Since(g.since).Round(time.Millisecond))
	}
	g.since, g.until, g.err = time.Time{}, time.Time{}, nil
	if g.gauge != nil {
		g.gauge.Set(0)
	}
}

// full returns the last refusal while intake should be refused: a batch
// waits for room, a refusal that was not retried is recent, or the store
// is still above admitBelow of its limit.
func (g *storeGate) full() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.since.IsZero() || (g.holding == 0 && !time.Now().Before(g.until) && g.hasRoomLocked()) {
		return nil
	}
	return g.err
}
