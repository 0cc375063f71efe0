package bus_test

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/bus/bustest"
	"github.com/herald-router/herald/config"
)

func TestTheArchiveStreamFollowsItsConfig(t *testing.T) {
	b := bustest.Open(t, "log")
	ctx := t.Context()
	if err := b.DeclareArchive(ctx, config.Archive{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.JS.Stream(ctx, bus.StreamArchive); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("archive off: stream lookup says %v, want no stream", err)
	}
	// Steps on one stream: a config change updates the stream in place.
	for _, tc := range []struct {
		name        string
		archive     config.Archive
		maxAge      time.Duration
		maxBytes    int64
		compression jetstream.StoreCompression
	}{
		{"an age limit alone keeps any size, compressed with s2 by default",
			config.Archive{MaxAge: config.Duration(24 * time.Hour)}, 24 * time.Hour, -1, jetstream.S2Compression},
		{"compression none writes the files as they are",
			config.Archive{MaxAge: config.Duration(24 * time.Hour), Compression: "none"}, 24 * time.Hour, -1, jetstream.NoCompression},
		{"a size limit alone keeps any age, and s2 can be turned on for an existing archive",
			config.Archive{MaxBytes: 256 << 20, Compression: "s2"}, 0, 256 << 20, jetstream.S2Compression},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := b.DeclareArchive(ctx, tc.archive); err != nil {
				t.Fatal(err)
			}
			st, err := b.JS.Stream(ctx, bus.StreamArchive)
			if err != nil {
				t.Fatal(err)
			}
			c := st.CachedInfo().Config
			if c.Retention != jetstream.LimitsPolicy || c.Discard != jetstream.DiscardOld {
				t.Errorf("retention %v, discard %v: an archive forgets its oldest and never refuses", c.Retention, c.Discard)
			}
			if c.MaxAge != tc.maxAge || c.MaxBytes != tc.maxBytes || c.Compression != tc.compression {
				t.Errorf("max_age %v, max_bytes %d, compression %v; want %v, %d, %v",
					c.MaxAge, c.MaxBytes, c.Compression, tc.maxAge, tc.maxBytes, tc.compression)
			}
		})
	}
}
