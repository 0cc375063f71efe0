package lease

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// KeepConfig says what a Keeper holds and runs.
type KeepConfig struct {
	// Keys are acquired together, in sorted order, all or none: a keeper
	// never sits on some of them while waiting for the others, so two
	// processes wanting the same keys cannot block each other.
	Keys []string
	// Start runs the work once every key is held and returns the function
	// that stops it. The stop function's ctx bounds a graceful stop; an
	// ended ctx asks for an immediate one. An error from Start releases the
	// keys and the keeper tries again after a TTL.
	Start func() (stop func(ctx context.Context), err error)
	// Held, when set, is told +1 for each key this keeper acquired and -1
	// for each it gave up or lost (a gauge per key: several keepers of one
	// process may overlap during a reload).
	Held func(key string, delta float64)
	Log  *slog.Logger
	// Poll is how often a keeper waiting for its keys tries them. Zero
	// means TTL/10, between 50ms and 1s.
	Poll time.Duration
}

// Keeper runs its work only while it holds every lease of its keys; see
// Bucket.Keep.
type Keeper struct {
	b    *Bucket
	cfg  KeepConfig
	self Holder
	log  *slog.Logger

	holding  atomic.Bool
	closing  chan struct{}
	closeCtx context.Context // set before closing is closed
	done     chan struct{}
	once     sync.Once
}

// Keep starts a keeper: in the background it acquires cfg.Keys, runs
// cfg.Start while it holds them all, renews them every TTL/3, stops the
// work as soon as one is lost (or cannot be confirmed in time) and tries to
// acquire them again, until Close.
func (b *Bucket) Keep(cfg KeepConfig) *Keeper {
	cfg.Keys = slices.Sorted(slices.Values(cfg.Keys))
	cfg.Keys = slices.Compact(cfg.Keys)
	if cfg.Poll <= 0 {
		cfg.Poll = min(max(b.ttl/10, 50*time.Millisecond), time.Second)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	self := b.self
	self.Keeper = b.keepers.Add(1)
	k := &Keeper{b: b, cfg: cfg, self: self, closing: make(chan struct{}), done: make(chan struct{}),
		log: cfg.Log.With("leases", strings.Join(cfg.Keys, ","))}
	go k.run()
	return k
}

// Holding reports whether the keeper holds its keys and runs its work.
func (k *Keeper) Holding() bool { return k.holding.Load() }

// Close stops the work (gracefully within ctx), releases the keys so that
// another process takes over at once, and waits for the keeper to end. It
// is idempotent.
func (k *Keeper) Close(ctx context.Context) {
	k.once.Do(func() {
		k.closeCtx = ctx
		close(k.closing)
	})
	<-k.done
}

// Done is closed when the keeper has ended (after Close).
func (k *Keeper) Done() <-chan struct{} { return k.done }

func (k *Keeper) run() {
	defer close(k.done)
	var waitingFor string // the last holder logged, to log each change once
	for {
		leases, err := k.acquireAll()
		if err != nil {
			var he *HeldError
			switch {
			case errors.As(err, &he):
				if s := he.By.String(); s != waitingFor {
					waitingFor = s
					// Nobody (it just expired), or a newer keeper of this
					// process after a reload: nothing worth a line.
					if he.By.Instance != "" && he.By.Instance != k.self.Instance {
						k.log.Info("sink lease held by another process; waiting to take over", "key", he.Key, "holder", s)
					}
				}
			default:
				k.log.Warn("sink lease not acquired; trying again", "err", err)
			}
			if !k.sleep(k.jitter(k.cfg.Poll)) {
				return
			}
			continue
		}
		waitingFor = ""
		k.held(leases, 1)
		stop, err := k.cfg.Start()
		if err != nil {
			k.log.Error("work under sink lease did not start; leases released", "err", err)
			k.release(leases)
			k.held(leases, -1)
			if !k.sleep(k.b.ttl) {
				return
			}
			continue
		}
		k.holding.Store(true)
		k.log.Info("sink leases acquired; running", "holder", k.self.String())
		lost, graceful := k.hold(leases)
		k.holding.Store(false)
		if lost {
			var ctx context.Context
			var cancel context.CancelFunc
			if graceful {
				// Taken over by a newer keeper of this process (a reload):
				// the same sinks carry on, so what is queued may finish.
				ctx, cancel = context.WithTimeout(context.Background(), k.b.ttl)
			} else {
				// Another process may be writing already: stop at once;
				// what was pulled and not written is delivered again.
				ctx, cancel = context.WithCancel(context.Background())
				cancel()
			}
			stop(ctx)
			cancel()
		} else {
			stop(k.closeCtx) // set before closing was closed
		}
		k.release(leases)
		k.held(leases, -1)
		if !lost {
			return
		}
		if graceful {
			// Until closed, it waits like any other keeper, so that it
			// takes over again if the newer one goes (a failed reload).
			k.log.Debug("sink leases handed over to a newer keeper of this process")
		} else {
			k.log.Warn("sink lease lost; work stopped, trying to acquire it again")
		}
		if !k.sleep(k.jitter(k.cfg.Poll)) {
			return
		}
	}
}

// acquireAll takes every key in order, or none.
func (k *Keeper) acquireAll() ([]*Lease, error) {
	var got []*Lease
	for _, key := range k.cfg.Keys {
		ctx, cancel := context.WithTimeout(context.Background(), k.b.ttl/3)
		l, err := k.b.acquire(ctx, key, k.self)
		cancel()
		if err != nil {
			k.release(got)
			return nil, err
		}
		got = append(got, l)
	}
	return got, nil
}

// hold renews the leases every TTL/3 until Close (lost false) or until one
// is lost or could not be renewed in time (lost true; graceful when a
// newer keeper of this process took it over).
func (k *Keeper) hold(leases []*Lease) (lost, graceful bool) {
	ttl := k.b.ttl
	// Give up 1/3 TTL before the key can expire, so the work has stopped
	// by the time another process can take over.
	giveUp := ttl * 2 / 3
	next := ttl / 3
	for {
		if !k.sleep(next) {
			return false, false
		}
		next = ttl / 3
		for _, l := range leases {
			left := giveUp - time.Since(l.Renewed())
			if left <= 0 {
				k.log.Error("sink lease not renewed in time; stopping before it expires", "key", l.Key())
				return true, false
			}
			ctx, cancel := context.WithTimeout(context.Background(), min(left, ttl/3))
			err := l.Renew(ctx)
			cancel()
			if err == nil {
				continue
			}
			if errors.Is(err, ErrLost) {
				graceful := k.superseded(l.Key())
				if !graceful {
					k.log.Error("sink lease lost; stopping", "key", l.Key(), "err", err)
				}
				return true, graceful
			}
			k.log.Warn("sink lease renewal failed; retrying", "key", l.Key(), "err", err)
			next = k.cfg.Poll
		}
	}
}

// superseded reports whether key is now held by a newer keeper of this
// same process.
func (k *Keeper) superseded(key string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), k.b.ttl/3)
	defer cancel()
	h, ok, err := k.b.holder(ctx, key)
	return err == nil && ok && h.Instance == k.self.Instance && h.Keeper > k.self.Keeper
}

func (k *Keeper) release(leases []*Lease) {
	for _, l := range leases {
		ctx, cancel := context.WithTimeout(context.Background(), k.b.ttl/3)
		err := l.Release(ctx)
		cancel()
		if err != nil && !errors.Is(err, ErrLost) {
			k.log.Warn("sink lease not released; it expires after the TTL", "key", l.Key(), "err", err)
		}
	}
}

func (k *Keeper) held(leases []*Lease, delta float64) {
	if k.cfg.Held == nil {
		return
	}
	for _, l := range leases {
		k.cfg.Held(l.Key(), delta)
	}
}

// sleep waits d, or answers false at once when the keeper is closing.
func (k *Keeper) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-k.closing:
		return false
	case <-t.C:
		return true
	}
}

// jitter spreads d by ±20% so that waiting processes do not poll in step.
func (k *Keeper) jitter(d time.Duration) time.Duration {
	return d*4/5 + rand.N(d*2/5+1)
}
