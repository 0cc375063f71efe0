package bus

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-router/herald/config"
)

// KVThrottle is the key-value bucket where XMPP sinks keep their throttle
// windows, so that the process taking a sink over continues them; keys
// are "<sink>.<encoded throttle key>". See actors/xmpp.
const KVThrottle = "HERALD_THROTTLE"

// CreateKeyValue is Bus.KeyValue for code that has the bus connection but
// not the Bus (sink providers): cfg gives the replicas and placement.
func CreateKeyValue(ctx context.Context, nc *nats.Conn, cfg config.Bus, log *slog.Logger, kv jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", kv.Bucket, err)
	}
	return (&Bus{JS: js, cfg: cfg, log: log}).KeyValue(ctx, kv)
}

// KeyValue creates or updates the bucket described by kv with the bus's
// replicas (bus.replicas) and placement (bus.placement), retried while a
// JetStream cluster forms, as the streams are: processes starting together
// all create the same bucket, and in a cluster only one request is
// answered at first.
func (b *Bus) KeyValue(ctx context.Context, kv jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv.Replicas = max(b.cfg.Replicas, 1)
	kv.Placement = Placement(b.cfg)
	var out jetstream.KeyValue
	err := b.whileClusterForms(ctx, func(ctx context.Context) error {
		var err error
		out, err = b.JS.CreateOrUpdateKeyValue(ctx, kv)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", kv.Bucket, err)
	}
	return out, nil
}
