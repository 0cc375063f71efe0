package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/herald-router/herald/schemas"
)

// ErrPanicked is the answer for a transaction during which the provider
// panicked (the sink's actor was restarted).
var ErrPanicked = errors.New("provider panicked")

// ErrSuspended is the answer of a sink that is suspended after a retryable
// error and not yet due for its next try.
var ErrSuspended = errors.New("sink suspended")

// Executor is one sink: the only caller of its provider. It runs as an
// actor, so transactions for it from any number of targets are serialised,
// and it keeps the sink's suspension state: after a retryable error the
// sink is suspended with exponential back-off and jitter, and the first
// transaction after the back-off is the probe that revives it.
type Executor struct {
	Name     string
	Provider Provider
	// Timeout bounds one transaction, so a hanging sink cannot hold its
	// batch for ever.
	Timeout time.Duration
	// BackoffMin and BackoffMax bound the suspension (doubling from min to
	// max, with jitter). Zero means 200ms and 30s.
	BackoffMin, BackoffMax time.Duration
	// Suspended is set to 1 while suspended (herald_sink_suspended).
	Suspended interface{ Set(float64) }
	// Committed counts the events the provider committed.
	Committed interface{ Add(float64) }
	// Restarts counts the actor's restarts after a provider panicked.
	Restarts interface{ Inc() }
	Log      *slog.Logger

	system *actor.ActorSystem
	pid    *actor.PID
	// retryAt is when a suspended sink may be tried again, in Unix nanos;
	// 0 while the sink is up. Read by the targets without a round trip.
	retryAt  atomic.Int64
	failures int // only touched in the actor
	once     sync.Once
}

// Back-off of a suspended sink: exponential with jitter, capped.
const (
	backoffMin = 200 * time.Millisecond
	backoffMax = 30 * time.Second
)

// txRequest asks the sink actor for one transaction.
type txRequest struct{ events []*schemas.Event }

// txResponse is its outcome.
type txResponse struct{ res Result }

// Start spawns the sink's actor. A panic in the provider restarts the actor
// (supervision); the transaction in progress is answered with an error so
// the target hands its batch on or holds it, and the provider is closed so
// the next Begin starts from a clean state.
func (e *Executor) Start(system *actor.ActorSystem) error {
	e.system = system
	props := actor.PropsFromProducer(func() actor.Actor { return &executorActor{e: e} })
	// A prefix, not a fixed name: a reload starts the new actor before the
	// old one stops.
	pid := system.Root.SpawnPrefix(props, "sink-"+e.Name+"-")
	e.pid = pid
	return nil
}

// Available reports whether a transaction may be tried now: the sink is up,
// or its back-off has passed (the probe).
func (e *Executor) Available() bool {
	at := e.retryAt.Load()
	return at == 0 || time.Now().UnixNano() >= at
}

// RetryAt is when a suspended sink may be tried again (zero when up).
func (e *Executor) RetryAt() time.Time {
	if at := e.retryAt.Load(); at != 0 {
		return time.Unix(0, at)
	}
	return time.Time{}
}

// Transact runs one transaction on the sink's actor and waits for it.
func (e *Executor) Transact(ctx context.Context, events []*schemas.Event) Result {
	if !e.Available() {
		return Result{Err: ErrSuspended}
	}
	wait := e.Timeout + 5*time.Second
	if d, ok := ctx.Deadline(); ok && time.Until(d) < wait {
		wait = time.Until(d)
	}
	f := e.system.Root.RequestFuture(e.pid, &txRequest{events: events}, wait)
	v, err := f.Result()
	if err != nil {
		return Result{Err: fmt.Errorf("sink %s: %w", e.Name, err)}
	}
	return v.(*txResponse).res
}

// Stop stops the actor after the transactions queued for it and closes
// the provider. It is idempotent.
func (e *Executor) Stop(ctx context.Context) {
	e.once.Do(func() {
		if e.pid != nil {
			f := e.system.Root.PoisonFuture(e.pid)
			done := make(chan struct{})
			go func() { _ = f.Wait(); close(done) }()
			select {
			case <-done:
			case <-ctx.Done():
			}
		}
		if err := e.Provider.Close(ctx); err != nil {
			e.Log.Error("closing sink", "sink", e.Name, "err", err)
		}
	})
}

func (e *Executor) run(req *txRequest) Result {
	ctx, cancel := context.WithTimeout(context.Background(), e.Timeout)
	defer cancel()
	res := Transact(ctx, e.Provider, req.events)
	if e.Committed != nil {
		e.Committed.Add(float64(res.Committed - len(res.Failed)))
	}
	if res.Err != nil {
		e.suspend(res.Err)
	} else {
		e.resume()
	}
	return res
}

func (e *Executor) suspend(cause error) {
	e.failures++
	wait := e.backoff()
	e.retryAt.Store(time.Now().Add(wait).UnixNano())
	if e.Suspended != nil {
		e.Suspended.Set(1)
	}
	e.Log.Warn("sink suspended after a retryable error", "sink", e.Name, "retry_in", wait, "failures", e.failures, "err", cause)
}

func (e *Executor) resume() {
	if e.failures > 0 {
		e.Log.Info("sink resumed", "sink", e.Name, "after_failures", e.failures)
	}
	e.failures = 0
	e.retryAt.Store(0)
	if e.Suspended != nil {
		e.Suspended.Set(0)
	}
}

func (e *Executor) backoff() time.Duration {
	lo, hi := e.BackoffMin, e.BackoffMax
	if lo <= 0 {
		lo = backoffMin
	}
	if hi <= 0 {
		hi = backoffMax
	}
	d := min(lo<<min(e.failures-1, 16), hi)
	return d/2 + rand.N(d/2+1)
}

// executorActor is the thin actor shell of an Executor.
type executorActor struct {
	e *Executor
	// requester of the transaction in progress, answered if it panics.
	requester *actor.PID
}

func (a *executorActor) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *txRequest:
		a.requester = c.Sender()
		res := a.e.run(m)
		a.requester = nil
		c.Respond(&txResponse{res: res})
	case *actor.Restarting:
		err := fmt.Errorf("sink %s: %w", a.e.Name, ErrPanicked)
		if a.e.Restarts != nil {
			a.e.Restarts.Inc()
		}
		a.e.Log.Error("sink provider panicked; actor restarted", "sink", a.e.Name)
		a.e.suspend(err)
		_ = a.e.Provider.Close(context.Background())
		if a.requester != nil {
			c.Send(a.requester, &txResponse{res: Result{Err: err}})
		}
	}
}
