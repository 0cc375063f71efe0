package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestDeadLettersCanBeListedShownRedrivenAndPurged(t *testing.T) {
	dir := t.TempDir()
	natsPort, metricsPort := freePort(t), freePort(t)
	cfg := writeConfig(t, dir, configParams{NATSPort: natsPort, MetricsPort: metricsPort})
	h := startHerald(t, "herald", cfg, metricsPort)
	h.waitReady(30 * time.Second)

	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", natsPort))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	for _, bad := range []string{`{"message": "unterminated`, `[1, 2]`, `{"target_mask": "four"}`} {
		if _, err := js.Publish(context.Background(), "herald.events.app", []byte(bad)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		n, err := h.metric(`herald_stage_dead_lettered_total{reason="malformed",stage="resolver"}`)
		if err != nil {
			return err
		}
		if n < 3 {
			return fmt.Errorf("%.0f dead letters so far", n)
		}
		return nil
	})

	code, out, errOut := runCommand(t, dir, 20*time.Second, "dlq", "list", "--config", cfg)
	if code != 0 || !strings.Contains(out, "resolver") || !strings.Contains(out, "malformed") || !strings.Contains(out, "  3  ") {
		t.Fatalf("dlq list: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = runCommand(t, dir, 20*time.Second, "dlq", "show", "1", "--config", cfg)
	if code != 0 || !strings.Contains(out, "origin:  herald.events.app") || !strings.Contains(out, "unterminated") {
		t.Fatalf("dlq show: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, _, _ := runCommand(t, dir, 20*time.Second, "dlq", "purge", "--config", cfg); code != 2 {
		t.Errorf("purge without a selector must refuse (exit 2), got %d", code)
	}
	code, out, _ = runCommand(t, dir, 20*time.Second, "dlq", "purge", "--reason", "malformed", "--config", cfg)
	if code != 0 || !strings.Contains(out, "purged: 3 letters") {
		t.Fatalf("dlq purge: exit %d: %s", code, out)
	}
	code, out, _ = runCommand(t, dir, 20*time.Second, "dlq", "list", "--config", cfg)
	if code != 0 || !strings.Contains(out, "no dead letters") {
		t.Errorf("after purge: exit %d: %s", code, out)
	}
}
