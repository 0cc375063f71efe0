// Package app wires herald together: it loads nothing itself, but given a
// config it opens the bus, starts the selected stages as supervised actors,
// serves metrics and health, and shuts everything down in order.
package app

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/herald-router/herald/actors/classifier"
	"github.com/herald-router/herald/actors/receiver"
	"github.com/herald-router/herald/actors/resolver"
	"github.com/herald-router/herald/actors/router"
	"github.com/herald-router/herald/actors/sink"
	"github.com/herald-router/herald/actors/stage"
	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/internal/lease"
	"github.com/herald-router/herald/internal/metrics"
)

// The stages, in pipeline order.
const (
	StageReceiver   = "receiver"
	StageClassifier = "classifier"
	StageResolver   = "resolver"
	StageRouter     = "router"
	StageSink       = "sink"
)

// AllStages is the default of --stages.
var AllStages = []string{StageReceiver, StageClassifier, StageResolver, StageRouter, StageSink}

// StagesNone selects no stage: the process only runs its embedded NATS
// server (a node of a cluster, say) and declares the streams, while the
// stages run in other processes connected to it.
const StagesNone = "none"

// ParseStages reads a comma-separated stage list, "all" or "none".
func ParseStages(s string) ([]string, error) {
	switch strings.TrimSpace(s) {
	case "", "all":
		return AllStages, nil
	case StagesNone:
		return []string{}, nil
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if !slices.Contains(AllStages, p) {
			return nil, fmt.Errorf("unknown stage %q; stages are %s, or all, or none alone", p, strings.Join(AllStages, ","))
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// Options are what the command line adds to the config.
type Options struct {
	Stages   []string
	Registry *sink.Registry
	// Receivers makes the receivers; nil means the syslog receiver only.
	Receivers *receiver.Registry
	// Kinds decode receivers and sinks when the config is reloaded.
	Kinds config.Kinds
	Log   *slog.Logger
}

// App is a running herald process: the parts that live as long as the
// process (bus, metrics, HTTP, actor system) and the current generation of
// stages, which a reload replaces.
type App struct {
	opts    Options
	log     *slog.Logger
	bus     *bus.Bus
	metrics *metrics.Metrics
	system  *actor.ActorSystem
	http    *http.Server
	// leases is the sink lease bucket, opened with the first single-writer
	// sink (see the sink leases section below).
	leases *lease.Bucket
	// taps is what `herald tap` watches among the subjects fused hops
	// stand in for (see stage.Taps).
	taps stage.Taps

	mu  sync.Mutex // serialises Reload and Shutdown; guards gen
	gen *generation

	ready atomic.Bool
	fatal chan error
	once  sync.Once
}

// generation is the stages one config made.
type generation struct {
	cfg *config.Config
	// what this generation took over from its predecessor: given back if
	// it fails to start.
	inheritedSinks     []*sink.Executor
	inheritedReceivers map[string]bool
	receivers          map[string]*receiverUnit
	// runners in pipeline order (upstream first).
	runners   []*runnerInfo
	executors []*sink.Executor
	// keepers run the targets of single-writer sinks while this process
	// holds those sinks' leases.
	keepers []*lease.Keeper
}

type receiverUnit struct {
	cfg     *config.Receiver
	pid     *actor.PID
	batcher *receiver.Batcher
}

type runnerInfo struct {
	stage  string
	runner *stage.Runner
	// upstreamLocal: the stage feeding this one runs in this process, so a
	// graceful stop waits for this stage to empty its queue.
	upstreamLocal bool
}

// Start builds and starts everything; on error what was started is stopped.
func Start(ctx context.Context, cfg *config.Config, opts Options) (_ *App, err error) {
	a := &App{opts: opts, log: opts.Log, metrics: metrics.New(), fatal: make(chan error, 1)}
	defer func() {
		if err != nil {
			a.stopNow() // a, not the result: "return nil, err" has set that to nil
		}
	}()
	if err := a.startHTTP(cfg); err != nil {
		return nil, err
	}
	if a.bus, err = bus.Open(ctx, cfg.Bus, a.log); err != nil {
		return nil, err
	}
	if u := a.bus.ClientURL(); u != "" {
		a.log.Info("embedded nats listening", "url", u, "data_dir", cfg.Bus.Embedded.DataDir)
	}
	// A tap announces the subject it watches; the answer tells it some
	// process heard it before it goes on. Fused hops copy what they hand
	// on to that subject from then on.
	if _, err := a.bus.NC.Subscribe(bus.SubjectTapControl, func(m *nats.Msg) {
		a.taps.Watch(string(m.Data))
		_ = m.Respond(nil)
	}); err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", bus.SubjectTapControl, err)
	}
	a.system = actor.NewActorSystem(actor.WithLoggerFactory(func(s *actor.ActorSystem) *slog.Logger {
		return slog.New(protoactorLogHandler{a.log.Handler()}).With("component", "protoactor")
	}))
	g := &generation{cfg: cfg, receivers: map[string]*receiverUnit{}}
	a.gen = g
	if err := a.startGeneration(ctx, g, nil); err != nil {
		return nil, err
	}
	a.ready.Store(true)
	stages := strings.Join(opts.Stages, ",")
	if stages == "" {
		stages = StagesNone
	}
	a.log.Info("herald started", "stages", stages, "config", cfg.Path)
	return a, nil
}

func (a *App) has(s string) bool { return slices.Contains(a.opts.Stages, s) }

// startGeneration starts g's stages, downstream first so that nothing waits
// on a stage not yet running. Receivers whose config is the same in old are
// taken over as they are (no gap in listening); those that changed are
// stopped in old and started anew. On error, what g started is stopped and
// old keeps running.
func (a *App) startGeneration(ctx context.Context, g, old *generation) (err error) {
	defer func() {
		if err != nil {
			if old != nil {
				a.giveBack(g, old)
			}
			a.stopGeneration(g, nil)
		}
	}()
	if err := a.bus.Declare(ctx, g.cfg.TargetNames()); err != nil {
		return err
	}
	if err := a.bus.DeclareArchive(ctx, g.cfg.Archive); err != nil {
		return err
	}
	if a.has(StageSink) {
		if err := a.startSinks(ctx, g, old); err != nil {
			return err
		}
	}
	rt, err := a.newRouter(g.cfg)
	if err != nil {
		return err
	}
	res, err := resolver.New(g.cfg.Resolver)
	if err != nil {
		return err
	}
	hops := []struct {
		name, stream, durable, upstream string
		proc                            stage.Processor
	}{
		{StageRouter, bus.StreamResolved, bus.ConsumerRouter, StageResolver, rt},
		{StageResolver, bus.StreamEvents, bus.ConsumerResolver, StageClassifier, res},
		{StageClassifier, bus.StreamRaw, bus.ConsumerClassifier, StageReceiver, classifier.Processor{}},
	}
	// links[i] is the stage after hops[i], as a Link a fused hop hands
	// its outputs to (see stage.Link).
	links := map[string]stage.Link{
		StageResolver: {Name: StageResolver, Proc: res, Metrics: a.metrics.Stage(StageResolver), Input: bus.SubjectEventsPrefix},
		StageRouter:   {Name: StageRouter, Proc: rt, Metrics: a.metrics.Stage(StageRouter), Input: bus.SubjectResolved},
	}
	if g.cfg.Archive.Enabled() {
		l := links[StageResolver]
		l.Mirror = bus.SubjectArchive
		links[StageResolver] = l
	}
	for i, h := range hops {
		if !a.has(h.name) {
			continue
		}
		// The stages that follow in this process, in pipeline order, up
		// to the first one that runs elsewhere.
		var next []stage.Link
		for j := i - 1; g.cfg.FuseStages && j >= 0 && a.has(hops[j].name); j-- {
			next = append(next, links[hops[j].name])
		}
		if err := a.startHop(ctx, g, h.name, h.stream, h.durable, h.proc, next); err != nil {
			return err
		}
	}
	if a.has(StageReceiver) {
		if err := a.startReceivers(g, old); err != nil {
			return err
		}
	}
	return nil
}

func (a *App) newRouter(cfg *config.Config) (*router.Router, error) {
	var ts []router.Target
	for name, t := range cfg.Targets {
		ts = append(ts, router.Target{Name: name, Bit: t.Bit, Filter: t.Filter})
	}
	var rules []router.Rule
	for _, r := range cfg.Rules {
		rules = append(rules, router.Rule{When: r.When, Receiver: r.Receiver, Mask: r.Mask, Add: r.Add})
	}
	r, err := router.New(ts, rules)
	if err != nil {
		return nil, err
	}
	m := a.metrics.Stage(StageRouter)
	r.Unrouted = func(n int) { m.Rejected("unrouted", n) }
	return r, nil
}

func (a *App) startHop(ctx context.Context, g *generation, name, stream, durable string, proc stage.Processor, next []stage.Link) error {
	cons, err := a.bus.Consumer(ctx, stream, durable)
	if err != nil {
		return err
	}
	m := a.metrics.Stage(name)
	h := &stage.Hop{
		Name: name, Bus: a.bus, Proc: proc, MaxBytes: int(g.cfg.Batch.MaxBytes) * 4,
		MaxDeliver: g.cfg.Bus.MaxDeliver, Metrics: m, Log: a.log, Next: next, Taps: &a.taps,
		AckWait: g.cfg.Bus.AckWait.D(),
	}
	if name == StageResolver && g.cfg.Archive.Enabled() {
		h.Mirror = bus.SubjectArchive
	}
	h.Init(bus.MaxAckPending)
	upstream := map[string]string{StageRouter: StageResolver, StageResolver: StageClassifier, StageClassifier: StageReceiver}[name]
	return a.startRunner(g, name, []jetstream.Consumer{cons}, h, m, a.has(upstream))
}

func (a *App) startRunner(g *generation, name string, cons []jetstream.Consumer, h stage.Handler, m *metrics.Stage, upstreamLocal bool) error {
	r, err := a.newRunner(g.cfg, name, cons, h, m)
	if err != nil {
		return err
	}
	// Prepend: runners end up in pipeline order (upstream first).
	g.runners = append([]*runnerInfo{{stage: name, runner: r, upstreamLocal: upstreamLocal}}, g.runners...)
	return nil
}

// newRunner starts a runner of h fed by cons.
func (a *App) newRunner(cfg *config.Config, name string, cons []jetstream.Consumer, h stage.Handler, m *metrics.Stage) (*stage.Runner, error) {
	r := &stage.Runner{
		Name: name, Consumers: cons, Handler: h, Metrics: m, Log: a.log, AckWait: cfg.Bus.AckWait.D(),
		OnFatal: func(err error) {
			select {
			case a.fatal <- err:
			default:
			}
		},
	}
	if err := r.Start(a.system); err != nil {
		return nil, err
	}
	return r, nil
}

// startSinks starts one actor per sink used by any target (an Executor,
// the only caller of its provider) and, per target, a Chain fed by the
// target's durable consumer that hands batches along the target's fail-over
// chain of sinks. A sink whose config is the same in old is taken over, so
// one destination never has two writers. A target whose chain lists a
// single-writer sink runs only while this process holds its lease.
func (a *App) startSinks(ctx context.Context, g, old *generation) error {
	cfg := g.cfg
	execs := map[string]*sink.Executor{}
	for _, t := range cfg.TargetNames() {
		for _, name := range cfg.Targets[t].Sinks {
			if execs[name] != nil {
				continue
			}
			if old != nil && reflect.DeepEqual(old.cfg.Sinks[name], cfg.Sinks[name]) {
				if i := slices.IndexFunc(old.executors, func(e *sink.Executor) bool { return e.Name == name }); i >= 0 {
					execs[name] = old.executors[i]
					g.inheritedSinks = append(g.inheritedSinks, old.executors[i])
					old.executors = slices.Delete(old.executors, i, i+1)
					continue
				}
			}
			p, err := a.opts.Registry.New(sink.Env{Name: name, Config: cfg, Log: a.log, NATS: a.bus.NC}, cfg.Sinks[name])
			if err != nil {
				return err
			}
			e := &sink.Executor{
				Name: name, Provider: p, Timeout: 30 * time.Second,
				Suspended: a.metrics.SinkSuspended.WithLabelValues(name),
				Committed: a.metrics.SinkCommitted.WithLabelValues(name),
				Restarts:  a.metrics.SinkRestarts.WithLabelValues(name), Log: a.log,
			}
			if err := e.Start(a.system); err != nil {
				_ = p.Close(ctx)
				return err
			}
			execs[name] = e
			g.executors = append(g.executors, e)
		}
	}
	var leased []leasedTarget
	for _, t := range cfg.TargetNames() {
		cons, err := a.bus.Consumer(ctx, bus.StreamTargets, bus.SinkConsumer(t))
		if err != nil {
			return err
		}
		var chain []*sink.Executor
		for _, name := range cfg.Targets[t].Sinks {
			chain = append(chain, execs[name])
		}
		stageName := "target." + t
		m := a.metrics.Stage(stageName)
		newChain := func() *sink.Chain {
			return &sink.Chain{
				Target: t, Sinks: chain, Bus: a.bus, MaxBytes: int(cfg.Batch.MaxBytes) * 4,
				MaxDeliver: cfg.Bus.MaxDeliver, AckWait: cfg.Bus.AckWait.D(), Metrics: m,
				Backlog: a.metrics.TargetBacklog.WithLabelValues(t), Latency: a.metrics.TargetLatency(t),
				Consumer: cons, Log: a.log,
			}
		}
		if sw := singleWriters(chain); len(sw) > 0 {
			leased = append(leased, leasedTarget{stage: stageName, sinks: sw, chain: chain, cons: cons, m: m, newChain: newChain})
			continue
		}
		if err := a.startRunner(g, stageName, []jetstream.Consumer{cons}, newChain(), m, a.has(StageRouter)); err != nil {
			return err
		}
	}
	return a.startLeased(ctx, g, leased)
}

// startReceivers starts g's receivers, taking over those of old whose
// config did not change.
func (a *App) startReceivers(g, old *generation) error {
	for _, name := range sortedNames(g.cfg.Receivers) {
		rc := g.cfg.Receivers[name]
		if old != nil {
			if u := old.receivers[name]; u != nil {
				if reflect.DeepEqual(u.cfg, rc) {
					g.receivers[name] = u
					if g.inheritedReceivers == nil {
						g.inheritedReceivers = map[string]bool{}
					}
					g.inheritedReceivers[name] = true
					delete(old.receivers, name)
					continue
				}
				// Changed: the old listener must let go of its address first.
				a.stopReceiver(context.Background(), name, u)
				delete(old.receivers, name)
			}
		}
		m := a.metrics.Stage(StageReceiver + "." + name)
		bt := receiver.NewBatcher(a.bus, bus.RawSubject(name), g.cfg.Batch.MaxEvents, int(g.cfg.Batch.MaxBytes),
			g.cfg.Batch.Linger.D(), m, a.log)
		reg := a.opts.Receivers
		if reg == nil {
			reg = receiver.NewRegistry()
			receiver.RegisterSyslog(reg)
		}
		l, err := reg.New(receiver.Env{Name: name, Config: g.cfg, Bus: a.bus, Batcher: bt, Metrics: m,
			Connections: a.metrics.Connections.WithLabelValues(name), Log: a.log}, rc)
		if err == nil {
			err = l.Listen()
		}
		if err != nil {
			_ = bt.Close(context.Background())
			return err
		}
		pid := a.system.Root.SpawnPrefix(actor.PropsFromProducer(func() actor.Actor {
			return &receiver.Actor{L: l, Grace: 5 * time.Second}
		}), "receiver-"+name+"-")
		g.receivers[name] = &receiverUnit{cfg: rc, pid: pid, batcher: bt}
		a.log.Info("receiver started", "receiver", name, "type", rc.Type)
	}
	return nil
}

// giveBack returns to old what g took over, so stopping g leaves it alone.
func (a *App) giveBack(g, old *generation) {
	old.executors = append(old.executors, g.inheritedSinks...)
	g.inheritedSinks = nil
	for name := range g.inheritedReceivers {
		old.receivers[name] = g.receivers[name]
		delete(g.receivers, name)
	}
	g.inheritedReceivers = nil
}

// stopReceiver stops a listener (its actor shuts it down) and flushes its
// batcher.
func (a *App) stopReceiver(ctx context.Context, name string, u *receiverUnit) {
	_ = a.system.Root.PoisonFuture(u.pid).Wait()
	if err := u.batcher.Close(ctx); err != nil {
		a.log.Error("receiver flush incomplete; records still in memory are lost", "receiver", name, "err", err)
	}
}

// Reload replaces the running stages with ones made from cfg: the new
// stages start first, on the same durable consumers, then the old ones
// drain what they hold and stop; what is in flight is finished or
// redelivered, never lost. Receivers whose config did not change keep
// listening throughout. Changes to bus and metrics need a restart and are
// only reported.
func (a *App) Reload(ctx context.Context, cfg *config.Config) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.gen
	if old == nil {
		return errors.New("shutting down")
	}
	if !reflect.DeepEqual(old.cfg.Bus, cfg.Bus) {
		a.log.Warn("reload: bus settings changed; they take effect at the next restart")
	}
	if !reflect.DeepEqual(old.cfg.Metrics, cfg.Metrics) {
		a.log.Warn("reload: metrics settings changed; they take effect at the next restart")
	}
	g := &generation{cfg: cfg, receivers: map[string]*receiverUnit{}}
	if err := a.startGeneration(ctx, g, old); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	g.executors = append(g.executors, g.inheritedSinks...)
	g.inheritedSinks, g.inheritedReceivers = nil, nil
	a.gen = g
	a.stopGeneration(old, ctx)
	a.log.Info("reloaded", "config", cfg.Path)
	return nil
}

// ReloadFile reads the config file again and reloads it. An invalid file
// changes nothing: every problem is logged with its position and returned.
func (a *App) ReloadFile(ctx context.Context) error {
	a.mu.Lock()
	if a.gen == nil {
		a.mu.Unlock()
		return errors.New("shutting down")
	}
	path := a.gen.cfg.Path
	a.mu.Unlock()
	cfg, err := config.Load(path, a.opts.Kinds)
	if err != nil {
		var ce *config.Errors
		if errors.As(err, &ce) {
			for _, e := range ce.List {
				a.log.Error("reload refused: config problem; the running config stays", "problem", e.Error())
			}
		} else {
			a.log.Error("reload refused; the running config stays", "err", err)
		}
		return err
	}
	if err := a.Reload(ctx, cfg); err != nil {
		a.log.Error("reload failed; the running config stays", "err", err)
		return err
	}
	return nil
}

// stopGeneration stops what g runs without waiting for queues to empty
// (the successor, if any, carries on with them). A nil ctx stops at once.
func (a *App) stopGeneration(g *generation, ctx context.Context) {
	if ctx == nil {
		c, cancel := context.WithCancel(context.Background())
		cancel()
		ctx = c
	}
	for _, name := range sortedNames(g.receivers) {
		a.stopReceiver(ctx, name, g.receivers[name])
	}
	for _, ri := range g.runners {
		ri.runner.Drain(ctx)
	}
	for _, k := range g.keepers {
		k.Close(ctx)
	}
	for _, e := range g.executors {
		e.Stop(ctx)
	}
}

func (a *App) startHTTP(cfg *config.Config) error {
	if cfg.Metrics.Listen == "" {
		return nil
	}
	token, err := metricsToken(cfg)
	if err != nil {
		return err
	}
	// guard requires the token, when one is configured, in constant time.
	guard := func(h http.Handler) http.Handler {
		if token == "" {
			return h
		}
		want := []byte("Bearer " + token)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
				w.Header().Set("WWW-Authenticate", "Bearer")
				http.Error(w, "a bearer token is required", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", guard(promhttp.HandlerFor(a.metrics.Registry, promhttp.HandlerOpts{})))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.ready.Load() || a.bus == nil || !a.bus.NC.IsConnected() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("/reload", guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST to reload the config", http.StatusMethodNotAllowed)
			return
		}
		if err := a.ReloadFile(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		_, _ = w.Write([]byte("reloaded\n"))
	})))
	if cfg.Metrics.Pprof {
		mux.Handle("/debug/pprof/", guard(http.HandlerFunc(pprof.Index)))
		mux.Handle("/debug/pprof/profile", guard(http.HandlerFunc(pprof.Profile)))
		mux.Handle("/debug/pprof/symbol", guard(http.HandlerFunc(pprof.Symbol)))
		mux.Handle("/debug/pprof/trace", guard(http.HandlerFunc(pprof.Trace)))
	}
	ln, err := net.Listen("tcp", cfg.Metrics.Listen)
	if err != nil {
		return fmt.Errorf("metrics listen %s: %w", cfg.Metrics.Listen, err)
	}
	a.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := a.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("metrics server", "err", err)
		}
	}()
	return nil
}

// Reopen asks every sink that writes files to reopen them at its next
// transaction (after logrotate moved them away).
func (a *App) Reopen() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.gen == nil {
		return
	}
	for _, e := range a.gen.executors {
		if r, ok := e.Provider.(interface{ Reopen() }); ok {
			r.Reopen()
		}
	}
	a.log.Info("files will be reopened at the next write")
}

// metricsToken reads the metrics endpoint's token from its file or
// environment variable; the token itself never appears in an error.
func metricsToken(cfg *config.Config) (string, error) {
	switch {
	case cfg.Metrics.TokenFile != "":
		b, err := os.ReadFile(cfg.Abs(cfg.Metrics.TokenFile))
		if err != nil {
			return "", fmt.Errorf("metrics.token_file: %w", err)
		}
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", fmt.Errorf("metrics.token_file %s is empty", cfg.Metrics.TokenFile)
		}
		return t, nil
	case cfg.Metrics.TokenEnv != "":
		t := strings.TrimSpace(os.Getenv(cfg.Metrics.TokenEnv))
		if t == "" {
			return "", fmt.Errorf("metrics.token_env: the variable %s is empty or unset", cfg.Metrics.TokenEnv)
		}
		return t, nil
	}
	return "", nil
}

// Fatal delivers an error that must end the process (a stage that died).
func (a *App) Fatal() <-chan error { return a.fatal }

// Shutdown stops gracefully within ctx: receivers stop taking records and
// flush, then each stage, upstream first, finishes what is queued for it
// and stops. Anything not finished when ctx ends stays in JetStream and is
// delivered after the next start: a hard stop can cause redelivery, never
// loss.
func (a *App) Shutdown(ctx context.Context) {
	a.once.Do(func() {
		a.ready.Store(false)
		a.log.Info("shutting down")
		a.mu.Lock()
		g := a.gen
		a.gen = nil
		a.mu.Unlock()
		dctx, cancel := drainContext(ctx)
		defer cancel()
		if g != nil {
			for _, name := range sortedNames(g.receivers) {
				a.stopReceiver(dctx, name, g.receivers[name])
			}
			for _, ri := range g.runners {
				if ri.upstreamLocal {
					a.waitEmpty(dctx, ri)
				}
				ri.runner.Drain(dctx)
			}
			for _, k := range g.keepers {
				k.Close(dctx) // drains its targets, then hands the leases over
			}
			for _, e := range g.executors {
				e.Stop(dctx)
			}
		}
		a.closeRest(ctx)
		a.log.Info("stopped")
	})
}

// drainContext is ctx less a reserve for closing the bus and the HTTP
// server after the stages: a tenth of the time left, at most 2 s. Without
// it a drain cut by shutdown_timeout ends the process that close's time
// later, and a service manager waiting shutdown_timeout kills it first.
func drainContext(ctx context.Context) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, dl.Add(-min(time.Until(dl)/10, 2*time.Second)))
}

// waitEmpty waits until the stage's consumers have nothing pending or
// unacknowledged, or ctx ends.
func (a *App) waitEmpty(ctx context.Context, ri *runnerInfo) {
	for {
		empty := true
		for _, c := range ri.runner.Consumers {
			qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			info, err := c.Info(qctx)
			cancel()
			if err != nil || info.NumPending > 0 || info.NumAckPending > 0 {
				empty = false
			}
		}
		if empty {
			return
		}
		select {
		case <-ctx.Done():
			a.log.Warn("shutdown timeout: stage still has queued work, left in JetStream for the next start", "stage", ri.stage)
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stopNow stops without draining (start-up failure).
func (a *App) stopNow() {
	a.once.Do(func() {
		if a.gen != nil {
			a.stopGeneration(a.gen, nil)
		}
		a.closeRest(context.Background())
	})
}

// closeRest closes what lives as long as the process; the HTTP server gets
// at most 2 s, less when ctx ends sooner.
func (a *App) closeRest(ctx context.Context) {
	if a.system != nil {
		a.system.Shutdown()
	}
	if a.bus != nil {
		a.bus.Close()
	}
	if a.http != nil {
		hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if a.http.Shutdown(hctx) != nil {
			_ = a.http.Close()
		}
		cancel()
	}
}

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// protoactorLogHandler passes protoactor's log records to herald's handler
// at warning level and above only: its info lines (system started, each
// supervision) are noise for a daemon, and herald logs restarts itself.
type protoactorLogHandler struct{ slog.Handler }

func (h protoactorLogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && h.Handler.Enabled(ctx, l)
}

func (h protoactorLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return protoactorLogHandler{h.Handler.WithAttrs(as)}
}

func (h protoactorLogHandler) WithGroup(name string) slog.Handler {
	return protoactorLogHandler{h.Handler.WithGroup(name)}
}

// ---- Sink leases (internal/lease) ----
//
// A target whose chain lists single-writer sinks (sink.IsSingleWriter: a
// file, stdout, an XMPP account) runs only in the process holding the
// leases of those sinks, whichever processes run the sink stage. Targets
// that share such sinks, directly or through others, form one group with
// one keeper: it holds the group's leases together and runs the group's
// targets while it holds them, so two processes never split a group and
// wait on each other. The other processes keep trying and take over
// within bus.lease_ttl of the holder's death.

// leasedTarget is a target whose chain has single-writer sinks.
type leasedTarget struct {
	stage    string
	sinks    []string // its single-writer sinks
	chain    []*sink.Executor
	cons     jetstream.Consumer
	m        *metrics.Stage
	newChain func() *sink.Chain // a fresh handler for each run
}

// singleWriters names the single-writer sinks of a chain.
func singleWriters(chain []*sink.Executor) []string {
	var out []string
	for _, e := range chain {
		if sink.IsSingleWriter(e.Provider) && !slices.Contains(out, e.Name) {
			out = append(out, e.Name)
		}
	}
	return out
}

// startLeased starts one lease keeper per group of targets.
func (a *App) startLeased(ctx context.Context, g *generation, targets []leasedTarget) error {
	if len(targets) == 0 {
		return nil
	}
	if a.leases == nil {
		// Sink processes starting together create the bucket at once: in a
		// cluster only one request is answered, the others ask again.
		var b *lease.Bucket
		err := a.bus.WhileClusterForms(ctx, func(ctx context.Context) error {
			var err error
			b, err = lease.Open(ctx, a.bus.JS, lease.Options{TTL: g.cfg.Bus.LeaseTTLOrDefault(), Replicas: g.cfg.Bus.Replicas, Placement: bus.Placement(g.cfg.Bus)})
			return err
		})
		if err != nil {
			return fmt.Errorf("bus.lease_ttl: %w", err)
		}
		a.leases = b
	}
	for _, group := range leaseGroups(targets) {
		var keys, stages []string
		for _, t := range group {
			stages = append(stages, t.stage)
			for _, s := range t.sinks {
				keys = append(keys, lease.SinkKey(s))
				a.metrics.SinkLeaseHeld.WithLabelValues(s).Add(0) // the series shows 0 while waiting
			}
		}
		g.keepers = append(g.keepers, a.leases.Keep(lease.KeepConfig{
			Keys: keys, Log: a.log.With("targets", strings.Join(stages, ",")),
			Held: func(key string, d float64) {
				s, _ := lease.SinkOf(key)
				a.metrics.SinkLeaseHeld.WithLabelValues(s).Add(d)
			},
			Start: func() (func(context.Context), error) { return a.runLeased(g.cfg, group) },
		}))
	}
	return nil
}

// leaseGroups joins the targets that share a single-writer sink,
// transitively, keeping the targets' order.
func leaseGroups(targets []leasedTarget) [][]leasedTarget {
	group := make([]int, len(targets)) // group[i]: the group of target i
	for i := range targets {
		group[i] = i
		for j := range i {
			if slices.ContainsFunc(targets[i].sinks, func(s string) bool { return slices.Contains(targets[j].sinks, s) }) {
				from, to := group[i], group[j]
				for k := range i + 1 {
					if group[k] == from {
						group[k] = to
					}
				}
			}
		}
	}
	var out [][]leasedTarget
	index := map[int]int{}
	for i, t := range targets {
		n, ok := index[group[i]]
		if !ok {
			n = len(out)
			index[group[i]] = n
			out = append(out, nil)
		}
		out[n] = append(out[n], t)
	}
	return out
}

// runLeased starts the runners of a group's targets (its keeper holds the
// leases) and returns what stops them. A graceful shutdown of a process
// whose router runs here waits for the targets to empty, as for every
// stage; on a lost lease the ctx has ended and they stop at once.
func (a *App) runLeased(cfg *config.Config, group []leasedTarget) (func(context.Context), error) {
	var run []*runnerInfo
	stop := func(ctx context.Context) {
		for _, ri := range run {
			if ri.upstreamLocal && ctx.Err() == nil && !a.ready.Load() { // shutting down
				a.waitEmpty(ctx, ri)
			}
			ri.runner.Drain(ctx)
		}
	}
	for _, t := range group {
		// The previous holder may have died in the middle of a write:
		// files are opened afresh, which cuts a torn last line.
		for _, e := range t.chain {
			if r, ok := e.Provider.(interface{ Reopen() }); ok && slices.Contains(t.sinks, e.Name) {
				r.Reopen()
			}
		}
		r, err := a.newRunner(cfg, t.stage, []jetstream.Consumer{t.cons}, t.newChain(), t.m)
		if err != nil {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			stop(ctx)
			return nil, err
		}
		run = append(run, &runnerInfo{stage: t.stage, runner: r, upstreamLocal: a.has(StageRouter)})
	}
	return stop, nil
}
