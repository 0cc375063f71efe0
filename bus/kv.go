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

// CreateKeyValue creates or updates the bucket described by kv on nc with
// the replicas (bus.replicas) and placement (bus.placement) of cfg,
// retried while a JetStream cluster forms like the lease bucket. It is for
// code that has the bus connection but not the Bus (sink providers).
func CreateKeyValue(ctx context.Context, nc *nats.Conn, cfg config.Bus, log *slog.Logger, kv jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", kv.Bucket, err)
	}
	kv.Replicas = max(cfg.Replicas, 1)
	kv.Placement = Placement(cfg)
	var out jetstream.KeyValue
	b := &Bus{cfg: cfg, log: log}
	err = b.whileClusterForms(ctx, func(ctx context.Context) error {
		var err error
		out, err = js.CreateOrUpdateKeyValue(ctx, kv)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", kv.Bucket, err)
	}
	return out, nil
}
