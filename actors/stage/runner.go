package stage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-router/herald/internal/metrics"
)

// Handler processes one delivery. The Runner never calls it concurrently.
// It may panic: the actor is restarted and the message is handed back to
// JetStream for another delivery.
type Handler interface {
	Handle(ctx context.Context, msg jetstream.Msg)
}

// Drainer is implemented by handlers with work in flight after Handle
// returned (acks awaiting publish confirmations); Drain finishes it.
type Drainer interface {
	Drain(ctx context.Context)
}

// Flow lets a handler pause and resume the pulling that feeds it.
type Flow interface {
	Pause()
	Resume()
}

// FlowControlled is implemented by handlers that pause their input (a
// suspended sink); the Runner hands them itself.
type FlowControlled interface {
	SetFlow(Flow)
}

// Ticker is implemented by handlers that need time to pass in the actor
// (retries, keeping held messages alive); Tick runs in the actor, never
// concurrently with Handle.
type Ticker interface {
	Tick(ctx context.Context)
}

// delivery is the actor message carrying one JetStream message.
type delivery struct {
	msg jetstream.Msg
	at  time.Time // when it was queued, or last kept alive
}

// tick is the actor message of the Ticker clock.
type tick struct{}

// Runner runs one Handler in a supervised actor fed by durable consumers.
type Runner struct {
	Name      string
	Consumers []jetstream.Consumer
	Handler   Handler
	Metrics   *metrics.Stage
	Log       *slog.Logger
	// OnFatal is called when the actor is stopped for good by its
	// supervisor (it kept failing): the process must not run on without
	// the stage.
	OnFatal func(error)

	system *actor.ActorSystem
	parent *actor.PID
	child  *actor.PID
	// AckWait is the consumers' ack wait. Messages pulled but still queued
	// for the actor are kept alive with InProgress well within it, so a
	// busy stage never has them redelivered (and written twice) while their
	// first delivery waits. Zero disables the keep-alive.
	AckWait time.Duration

	qmu    sync.Mutex // guards queued
	queued map[*delivery]struct{}

	mu       sync.Mutex // guards pumps
	pumps    []jetstream.ConsumeContext
	paused   atomic.Bool
	tickStop chan struct{}
	keepStop chan struct{}
	stopping atomic.Bool
	ctx      context.Context
	cancel   context.CancelFunc
	once     sync.Once
}

// Start spawns the actor and starts pulling.
func (r *Runner) Start(system *actor.ActorSystem) error {
	r.system = system
	r.ctx, r.cancel = context.WithCancel(context.Background())
	started := make(chan *actor.PID, 1)
	sup := actor.NewOneForOneStrategy(1000, time.Minute, func(reason any) actor.Directive {
		r.Metrics.Restarts.Inc()
		r.Log.Error("stage actor panicked; restarting it", "stage", r.Name, "reason", fmt.Sprint(reason))
		return actor.RestartDirective
	})
	parentProps := actor.PropsFromProducer(func() actor.Actor {
		return &supervisor{r: r, started: started}
	}, actor.WithSupervisor(sup))
	// A prefix, not a fixed name: a reload starts the new actor before the
	// old one stops.
	pid := system.Root.SpawnPrefix(parentProps, "stage-"+r.Name+"-")
	r.parent = pid
	select {
	case r.child = <-started:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("stage %s: actor did not start", r.Name)
	}
	r.queued = map[*delivery]struct{}{}
	if err := r.startPumps(); err != nil {
		r.Stop()
		return err
	}
	if r.AckWait > 0 {
		r.keepStop = make(chan struct{})
		go r.keepAlive()
	}
	if fc, ok := r.Handler.(FlowControlled); ok {
		fc.SetFlow(r)
	}
	if _, ok := r.Handler.(Ticker); ok {
		r.tickStop = make(chan struct{})
		go r.tickLoop()
	}
	return nil
}

// startPumps starts pulling from every consumer into the actor.
func (r *Runner) startPumps() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.Consumers {
		cc, err := c.Consume(func(m jetstream.Msg) {
			d := &delivery{msg: m, at: time.Now()}
			r.qmu.Lock()
			r.queued[d] = struct{}{}
			r.qmu.Unlock()
			r.system.Root.Send(r.child, d)
		},
			// A short expiry: the default 30 s stalled consumers under an
			// ack backlog in the measurements.
			jetstream.PullExpiry(2*time.Second),
			jetstream.PullMaxMessages(64),
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				if !errors.Is(err, jetstream.ErrNoHeartbeat) || !r.stopping.Load() {
					r.Log.Warn("consumer error", "stage", r.Name, "err", err)
				}
			}))
		if err != nil {
			return fmt.Errorf("stage %s: consume: %w", r.Name, err)
		}
		r.pumps = append(r.pumps, cc)
	}
	return nil
}

// stopPumps stops pulling. Drain rather than Stop: what the client already
// pulled still reaches the actor, so nothing waits out its AckWait.
func (r *Runner) stopPumps() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.pumps {
		p.Drain()
	}
	r.pumps = nil
}

// Pause stops pulling until Resume; the handler keeps what it has. A
// suspended sink pauses so that its queue waits in JetStream, not in
// redeliveries that would count against bus.max_deliver.
func (r *Runner) Pause() {
	if r.paused.CompareAndSwap(false, true) {
		r.stopPumps()
		r.Log.Info("stage paused", "stage", r.Name)
	}
}

// Resume starts pulling again after Pause.
func (r *Runner) Resume() {
	if r.stopping.Load() {
		return
	}
	if r.paused.CompareAndSwap(true, false) {
		if err := r.startPumps(); err != nil {
			r.Log.Error("resume failed", "stage", r.Name, "err", err)
			r.paused.Store(true)
			return
		}
		r.Log.Info("stage resumed", "stage", r.Name)
	}
}

// tickLoop sends the actor a tick every TickEvery, for handlers that work
// on time (retrying a suspended sink, keeping held messages alive).
func (r *Runner) tickLoop() {
	t := time.NewTicker(TickEvery)
	defer t.Stop()
	for {
		select {
		case <-r.tickStop:
			return
		case <-t.C:
			r.system.Root.Send(r.child, tick{})
		}
	}
}

// keepAlive tells JetStream that messages waiting in the actor's mailbox
// are in progress, before their ack wait runs out.
func (r *Runner) keepAlive() {
	every := r.AckWait / 3
	t := time.NewTicker(every / 2)
	defer t.Stop()
	for {
		select {
		case <-r.keepStop:
			return
		case now := <-t.C:
			r.qmu.Lock()
			for d := range r.queued {
				if now.Sub(d.at) >= every {
					_ = d.msg.InProgress()
					d.at = now
				}
			}
			r.qmu.Unlock()
		}
	}
}

// TickEvery is how often a Ticker handler is ticked.
const TickEvery = 200 * time.Millisecond

// Drain stops pulling, lets the actor finish every delivery already in its
// mailbox, waits for the handler's work in flight, then stops the actor.
// Messages pulled but not yet handed over are redelivered later, never lost.
func (r *Runner) Drain(ctx context.Context) {
	r.once.Do(func() {
		r.stopping.Store(true)
		if r.tickStop != nil {
			close(r.tickStop)
		}
		if r.keepStop != nil {
			close(r.keepStop)
		}
		r.stopPumps()
		stopped := true
		if r.child != nil {
			f := r.system.Root.PoisonFuture(r.child)
			done := make(chan error, 1)
			go func() { done <- f.Wait() }()
			select {
			case <-done:
			case <-ctx.Done():
				// Out of time: stop after the message in hand (cancelling
				// its context), and wait for that, so the handler's Drain
				// below never runs beside the actor.
				r.cancel()
				r.system.Root.Stop(r.child)
				stopped = <-done == nil
			}
		}
		if d, ok := r.Handler.(Drainer); ok && stopped {
			d.Drain(ctx)
		}
		r.cancel()
		if r.parent != nil {
			_ = r.system.Root.StopFuture(r.parent).Wait()
		}
	})
}

// Stop is Drain with no time to finish anything.
func (r *Runner) Stop() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r.Drain(ctx)
}

// supervisor owns the worker and reports its death.
type supervisor struct {
	r       *Runner
	started chan *actor.PID
}

func (s *supervisor) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *actor.Started:
		child := c.Spawn(actor.PropsFromProducer(func() actor.Actor { return &worker{r: s.r} }))
		s.started <- child
	case *actor.Terminated:
		if !s.r.stopping.Load() && s.r.OnFatal != nil {
			s.r.OnFatal(fmt.Errorf("stage %s: actor %s stopped after repeated failures", s.r.Name, m.Who.Id))
		}
	}
}

// worker is the thin shell around the Handler.
type worker struct {
	r       *Runner
	current jetstream.Msg
}

func (w *worker) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *delivery:
		w.r.qmu.Lock()
		delete(w.r.queued, m)
		w.r.qmu.Unlock()
		w.current = m.msg
		w.r.Handler.Handle(w.r.ctx, m.msg)
		w.current = nil
	case tick:
		if t, ok := w.r.Handler.(Ticker); ok {
			t.Tick(w.r.ctx)
		}
	case *actor.Restarting:
		// The message that made Handle panic goes back to JetStream now
		// rather than after AckWait; after bus.max_deliver it is
		// dead-lettered by the handler.
		if w.current != nil {
			_ = w.current.NakWithDelay(100 * time.Millisecond)
			w.r.Metrics.Nakked.Inc()
		}
	}
}
