package elapi_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/internal/app"
	"github.com/herald-router/herald/internal/providers"
)

// testHerald is herald's whole pipeline running in this process against
// its own NATS server (nats-server's server package, JetStream on a
// temporary folder, a random port on 127.0.0.1): what an application
// dials.
type testHerald struct {
	URL string
	Dir string // the config's folder; sinks' relative paths land here
	srv *server.Server
	app *app.App
}

// heraldConfig is the config around the targets and sinks a test gives.
const heraldConfig = `log: {level: warn, format: text}
bus:
  urls: [%s]
  ack_wait: 5s
metrics: {listen: ""}
shutdown_timeout: 10s
%s`

// runHerald starts a NATS server and herald in dir with targetsAndSinks
// (the targets: and sinks: sections). Examples call it directly; tests
// use startHerald.
func runHerald(dir, targetsAndSinks string) (*testHerald, error) {
	opts := &server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: filepath.Join(dir, "nats"), NoLog: true, NoSigs: true,
		MaxPayload: 8 << 20, JetStreamMaxMemory: 64 << 20,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("nats server not ready within 10s")
	}
	h := &testHerald{URL: srv.ClientURL(), Dir: dir, srv: srv}
	path := filepath.Join(dir, "herald.yaml")
	data := fmt.Sprintf(heraldConfig, h.URL, targetsAndSinks)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		h.Stop()
		return nil, err
	}
	reg := providers.Registry()
	cfg, err := config.Load(path, providers.Kinds(reg))
	if err != nil {
		h.Stop()
		return nil, fmt.Errorf("herald config: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h.app, err = app.Start(ctx, cfg, app.Options{Stages: []string{app.StageResolver, app.StageRouter, app.StageSink},
		Registry: reg, Receivers: providers.Receivers(), Kinds: providers.Kinds(reg), Log: log})
	if err != nil {
		h.Stop()
		return nil, fmt.Errorf("herald: %w", err)
	}
	return h, nil
}

// Stop drains herald and stops the server.
func (h *testHerald) Stop() {
	if h.app != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		h.app.Shutdown(ctx)
		cancel()
		h.app = nil
	}
	h.srv.Shutdown()
	h.srv.WaitForShutdown()
}

// startHerald is runHerald for a test, stopped in t.Cleanup.
func startHerald(t testing.TB, targetsAndSinks string) *testHerald {
	t.Helper()
	h, err := runHerald(t.TempDir(), targetsAndSinks)
	if err != nil {
		t.Fatalf("start herald: %v", err)
	}
	t.Cleanup(h.Stop)
	return h
}

// fileTargets: audit and log, each to its own JSON file.
const fileTargets = `targets:
  audit: {bit: 2, sinks: [auditfile]}
  log:   {bit: 4, sinks: [logfile]}
sinks:
  auditfile: {type: file, path: out/audit.jsonl, format: json}
  logfile:   {type: file, path: out/log.jsonl, format: json}
`
