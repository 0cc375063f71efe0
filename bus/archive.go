package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The archive: a copy of every resolved batch, kept by age and size for
// `herald replay`. It is a stream of its own with limits retention, so the
// work-queue streams stay small; it exists only when the config enables it.
const (
	StreamArchive  = "HERALD_ARCHIVE"
	SubjectArchive = "herald.archive"
)

// DeclareArchive creates or updates the archive stream with its limits, or
// deletes nothing and does nothing when both limits are zero (disabled).
func (b *Bus) DeclareArchive(ctx context.Context, maxAge time.Duration, maxBytes int64) error {
	if maxAge == 0 && maxBytes == 0 {
		return nil
	}
	sc := jetstream.StreamConfig{
		Name:       StreamArchive,
		Subjects:   []string{SubjectArchive},
		Retention:  jetstream.LimitsPolicy,
		Storage:    jetstream.FileStorage,
		Replicas:   b.cfg.Replicas,
		Duplicates: b.cfg.Duplicates.D(),
		MaxAge:     maxAge,
		MaxBytes:   maxBytes,
		Discard:    jetstream.DiscardOld, // an archive forgets its oldest, never refuses
	}
	if maxBytes == 0 {
		sc.MaxBytes = -1
	}
	if _, err := b.JS.CreateOrUpdateStream(ctx, sc); err != nil {
		return fmt.Errorf("declare stream %s: %w", StreamArchive, err)
	}
	return nil
}
