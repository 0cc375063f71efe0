// Package app wires herald together: it loads nothing itself, but given a
// config it opens the bus, starts the selected stages as supervised actors,
// serves metrics and health, and shuts everything down in order.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
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

// ParseStages reads a comma-separated stage list.
func ParseStages(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" || s == "all" {
		return AllStages, nil
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if !slices.Contains(AllStages, p) {
			return nil, fmt.Errorf("unknown stage %q; stages are %s", p, strings.Join(AllStages, ","))
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
	Log      *slog.Logger
}

// App is a running herald process.
type App struct {
	cfg     *config.Config
	opts    Options
	log     *slog.Logger
	bus     *bus.Bus
	metrics *metrics.Metrics
	system  *actor.ActorSystem
	http    *http.Server

	receivers []*actor.PID
	executors []*sink.Executor
	syslogs   []*receiver.Syslog
	batchers  []*receiver.Batcher
	// stages in pipeline order, each with the consumers it drains.
	runners []*runnerInfo

	ready atomic.Bool
	fatal chan error
	once  sync.Once
}

type runnerInfo struct {
	stage  string
	runner *stage.Runner
	// upstreamLocal: the stage feeding this one runs in this process, so a
	// graceful stop waits for this stage to empty its queue.
	upstreamLocal bool
}

// Start builds and starts everything; on error what was started is stopped.
func Start(ctx context.Context, cfg *config.Config, opts Options) (a *App, err error) {
	a = &App{cfg: cfg, opts: opts, log: opts.Log, metrics: metrics.New(), fatal: make(chan error, 1)}
	defer func() {
		if err != nil {
			a.stopNow()
			a = nil
		}
	}()
	if err := a.startHTTP(); err != nil {
		return nil, err
	}
	if a.bus, err = bus.Open(ctx, cfg.Bus, a.log); err != nil {
		return nil, err
	}
	if u := a.bus.ClientURL(); u != "" {
		a.log.Info("embedded nats listening", "url", u, "data_dir", cfg.Bus.Embedded.DataDir)
	}
	if err := a.bus.Declare(ctx, cfg.TargetNames()); err != nil {
		return nil, err
	}
	a.system = actor.NewActorSystem(actor.WithLoggerFactory(func(s *actor.ActorSystem) *slog.Logger {
		return slog.New(protoactorLogHandler{a.log.Handler()}).With("component", "protoactor")
	}))
	has := func(s string) bool { return slices.Contains(opts.Stages, s) }
	// Downstream first, so that nothing waits on a stage not yet running.
	if has(StageSink) {
		if err := a.startSinks(ctx, has(StageRouter)); err != nil {
			return nil, err
		}
	}
	rt, err := a.newRouter()
	if err != nil {
		return nil, err
	}
	hops := []struct {
		name, stream, durable, upstream string
		proc                            stage.Processor
	}{
		{StageRouter, bus.StreamResolved, bus.ConsumerRouter, StageResolver, rt},
		{StageResolver, bus.StreamEvents, bus.ConsumerResolver, StageClassifier, resolver.Processor{}},
		{StageClassifier, bus.StreamRaw, bus.ConsumerClassifier, StageReceiver, classifier.Processor{}},
	}
	for _, h := range hops {
		if !has(h.name) {
			continue
		}
		if err := a.startHop(ctx, h.name, h.stream, h.durable, h.proc, has(h.upstream)); err != nil {
			return nil, err
		}
	}
	if has(StageReceiver) {
		if err := a.startReceivers(); err != nil {
			return nil, err
		}
	}
	a.ready.Store(true)
	a.log.Info("herald started", "stages", strings.Join(opts.Stages, ","), "config", cfg.Path)
	return a, nil
}

func (a *App) newRouter() (*router.Router, error) {
	var ts []router.Target
	for name, t := range a.cfg.Targets {
		ts = append(ts, router.Target{Name: name, Bit: t.Bit, Filter: t.Filter})
	}
	var rules []router.Rule
	for _, r := range a.cfg.Rules {
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

func (a *App) startHop(ctx context.Context, name, stream, durable string, proc stage.Processor, upstreamLocal bool) error {
	cons, err := a.bus.Consumer(ctx, stream, durable)
	if err != nil {
		return err
	}
	m := a.metrics.Stage(name)
	h := &stage.Hop{
		Name: name, Bus: a.bus, Proc: proc, MaxBytes: int(a.cfg.Batch.MaxBytes) * 4,
		MaxDeliver: a.cfg.Bus.MaxDeliver, Metrics: m, Log: a.log,
	}
	h.Init(bus.MaxAckPending)
	return a.startRunner(name, []jetstream.Consumer{cons}, h, m, upstreamLocal)
}

func (a *App) startRunner(name string, cons []jetstream.Consumer, h stage.Handler, m *metrics.Stage, upstreamLocal bool) error {
	r := &stage.Runner{
		Name: name, Consumers: cons, Handler: h, Metrics: m, Log: a.log,
		OnFatal: func(err error) {
			select {
			case a.fatal <- err:
			default:
			}
		},
	}
	if err := r.Start(a.system); err != nil {
		return err
	}
	// Prepend: runners end up in pipeline order (upstream first).
	a.runners = append([]*runnerInfo{{stage: name, runner: r, upstreamLocal: upstreamLocal}}, a.runners...)
	return nil
}

// startSinks starts one actor per sink used by any target (an Executor,
// the only caller of its provider) and, per target, a Chain fed by the
// target's durable consumer that hands batches along the target's fail-over
// chain of sinks.
func (a *App) startSinks(ctx context.Context, routerLocal bool) error {
	execs := map[string]*sink.Executor{}
	for _, t := range a.cfg.TargetNames() {
		for _, name := range a.cfg.Targets[t].Sinks {
			if execs[name] != nil {
				continue
			}
			p, err := a.opts.Registry.New(sink.Env{Name: name, Config: a.cfg, Log: a.log, NATS: a.bus.NC}, a.cfg.Sinks[name])
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
			a.executors = append(a.executors, e)
		}
	}
	for _, t := range a.cfg.TargetNames() {
		cons, err := a.bus.Consumer(ctx, bus.StreamTargets, bus.SinkConsumer(t))
		if err != nil {
			return err
		}
		var chain []*sink.Executor
		for _, name := range a.cfg.Targets[t].Sinks {
			chain = append(chain, execs[name])
		}
		stageName := "target." + t
		m := a.metrics.Stage(stageName)
		c := &sink.Chain{
			Target: t, Sinks: chain, Bus: a.bus, MaxBytes: int(a.cfg.Batch.MaxBytes) * 4,
			MaxDeliver: a.cfg.Bus.MaxDeliver, AckWait: a.cfg.Bus.AckWait.D(), Metrics: m,
			Backlog: a.metrics.TargetBacklog.WithLabelValues(t), Consumer: cons, Log: a.log,
		}
		if err := a.startRunner(stageName, []jetstream.Consumer{cons}, c, m, routerLocal); err != nil {
			return err
		}
	}
	return nil
}

func (a *App) startReceivers() error {
	for _, name := range sortedNames(a.cfg.Receivers) {
		rc := a.cfg.Receivers[name]
		so, ok := rc.Options.(*config.SyslogReceiver)
		if !ok {
			return fmt.Errorf("receiver %s: type %s is not supported yet", name, rc.Type)
		}
		m := a.metrics.Stage(StageReceiver + "." + name)
		bt := receiver.NewBatcher(a.bus, bus.RawSubject(name), a.cfg.Batch.MaxEvents, int(a.cfg.Batch.MaxBytes),
			a.cfg.Batch.Linger.D(), m, a.log)
		a.batchers = append(a.batchers, bt)
		s := &receiver.Syslog{
			Name: name, TCPAddr: so.TCP, UDPAddr: so.UDP, MaxMessageSize: int(so.MaxMessageSize),
			MaxConnections: so.MaxConnections, TargetMask: so.TargetMask, Batcher: bt, Metrics: m,
			Connections: a.metrics.Connections.WithLabelValues(name), Log: a.log,
		}
		if err := s.Listen(); err != nil {
			return err
		}
		a.syslogs = append(a.syslogs, s)
		pid, err := a.system.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor {
			return &receiver.Actor{L: s, Grace: 5 * time.Second}
		}), "receiver-"+name)
		if err != nil {
			s.Shutdown(context.Background())
			return fmt.Errorf("receiver %s: %w", name, err)
		}
		a.receivers = append(a.receivers, pid)
		a.log.Info("receiver listening", "receiver", name, "tcp", so.TCP, "udp", so.UDP)
	}
	return nil
}

func (a *App) startHTTP() error {
	if a.cfg.Metrics.Listen == "" {
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.metrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.ready.Load() || a.bus == nil || !a.bus.NC.IsConnected() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	if a.cfg.Metrics.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	ln, err := net.Listen("tcp", a.cfg.Metrics.Listen)
	if err != nil {
		return fmt.Errorf("metrics listen %s: %w", a.cfg.Metrics.Listen, err)
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
	for _, e := range a.executors {
		if r, ok := e.Provider.(interface{ Reopen() }); ok {
			r.Reopen()
		}
	}
	a.log.Info("files will be reopened at the next write")
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
		for _, pid := range a.receivers {
			_ = a.system.Root.PoisonFuture(pid).Wait()
		}
		for _, bt := range a.batchers {
			if err := bt.Close(ctx); err != nil {
				a.log.Error("receiver flush incomplete; records still in memory are lost", "err", err)
			}
		}
		for _, ri := range a.runners {
			if ri.upstreamLocal {
				a.waitEmpty(ctx, ri)
			}
			ri.runner.Drain(ctx)
		}
		for _, e := range a.executors {
			e.Stop(ctx)
		}
		a.closeRest()
		a.log.Info("stopped")
	})
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
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		for _, s := range a.syslogs {
			s.Shutdown(ctx)
		}
		for _, bt := range a.batchers {
			_ = bt.Close(ctx)
		}
		for _, ri := range a.runners {
			ri.runner.Stop()
		}
		for _, e := range a.executors {
			e.Stop(ctx)
		}
		a.closeRest()
	})
}

func (a *App) closeRest() {
	if a.system != nil {
		a.system.Shutdown()
	}
	if a.bus != nil {
		a.bus.Close()
	}
	if a.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = a.http.Shutdown(ctx)
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
