package bus

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-router/herald/config"
)

// The archive: a copy of every resolved batch, kept by age and size for
// `herald replay`. It is a stream of its own with limits retention, so the
// work-queue streams stay small; it exists only when the config enables it.
const (
	StreamArchive  = "HERALD_ARCHIVE"
	SubjectArchive = "herald.archive"
	// HeaderSink pins a batch on a target's subject to one sink of the
	// target's chain: `herald replay --sink` sets it, and the target's
	// chain offers such a batch to that sink only (no fail-over).
	HeaderSink = "Herald-Sink"
)

// DeclareArchive creates or updates the archive stream with its limits, or
// deletes nothing and does nothing when the archive is off.
func (b *Bus) DeclareArchive(ctx context.Context, a config.Archive) error {
	if !a.Enabled() {
		return nil
	}
	sc := archiveStreamConfig(a, b.cfg)
	// JetStream reserves the archive's max_bytes against max_store: the
	// work streams' budgets, declared first, make room for it (or for its
	// growth on a reload).
	if sc.MaxBytes > 0 && b.Server != nil {
		var old int64
		if s, err := b.JS.Stream(ctx, StreamArchive); err == nil {
			old = max(s.CachedInfo().Config.MaxBytes, 0)
		}
		if err := b.makeRoom(ctx, sc.MaxBytes-old); err != nil {
			return fmt.Errorf("declare stream %s: %w", StreamArchive, err)
		}
	}
	if err := b.whileClusterForms(ctx, func(ctx context.Context) error {
		_, err := b.JS.CreateOrUpdateStream(ctx, sc)
		return err
	}); err != nil {
		return fmt.Errorf("declare stream %s: %w", StreamArchive, err)
	}
	return nil
}

// archiveStreamConfig is the archive's stream: limits retention, the
// oldest dropped first, never a refusal.
func archiveStreamConfig(a config.Archive, bc config.Bus) jetstream.StreamConfig {
	sc := jetstream.StreamConfig{
		Name:       StreamArchive,
		Subjects:   []string{SubjectArchive},
		Retention:  jetstream.LimitsPolicy,
		Storage:    jetstream.FileStorage,
		Replicas:   bc.Replicas,
		Placement:  Placement(bc),
		Duplicates: bc.Duplicates.D(),
		MaxAge:     a.MaxAge.D(),
		MaxBytes:   int64(a.MaxBytes),
		Discard:    jetstream.DiscardOld, // an archive forgets its oldest, never refuses
	}
	if a.MaxBytes == 0 {
		sc.MaxBytes = -1
	}
	if a.Compressed() {
		sc.Compression = jetstream.S2Compression
	}
	return sc
}
