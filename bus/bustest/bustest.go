// Package bustest starts real embedded NATS servers for tests, the way
// herald runs one, and waits for conditions without sleeping blindly.
package bustest

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/config"
)

// Open starts an embedded server with JetStream in t.TempDir(), declares
// herald's streams for targets, and closes everything at cleanup. Set
// HERALD_NATS_LOG=debug to see the server's log.
func Open(t testing.TB, targets ...string) *bus.Bus {
	t.Helper()
	cfg := config.Default().Bus
	cfg.Embedded.Listen = "" // in-process only
	cfg.Embedded.DataDir = t.TempDir()
	cfg.AckWait = config.Duration(2 * time.Second)
	cfg.MaxDeliver = 5
	b, err := bus.Open(context.Background(), cfg, Logger(t))
	if err != nil {
		t.Fatalf("open bus: %v", err)
	}
	t.Cleanup(b.Close)
	if len(targets) == 0 {
		targets = []string{"log"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Declare(ctx, targets); err != nil {
		t.Fatalf("declare: %v", err)
	}
	return b
}

// Logger returns a logger that is quiet unless HERALD_NATS_LOG=debug.
func Logger(t testing.TB) *slog.Logger {
	if os.Getenv("HERALD_NATS_LOG") == "debug" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Eventually calls f every interval until it returns nil or total has
// passed; then the test fails with f's last explanation.
func Eventually(t testing.TB, total, every time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after %s: %v", total, err)
		}
		time.Sleep(every)
	}
}
