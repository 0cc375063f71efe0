package config

import "time"

// Archive keeps a copy of every resolved event for `herald replay`, in a
// stream of its own (HERALD_ARCHIVE, limits retention: the oldest events go
// first, nothing is ever refused), so the pipeline's work queues stay
// small. It is off unless max_age or max_bytes is set. What it costs was
// measured with services/loadgen/archive-cost.sh (BENCHMARKS.md, Archive
// cost); the figures are in the keys' docs.
type Archive struct {
	// MaxAge drops archived events older than this, e.g. 24h. Default 0
	// (no age limit; with max_bytes also 0 the archive is off). Disk: about
	// 550 bytes per event before compression (a 200-byte syslog line once
	// resolved, with its fields: 524 MiB per million), so the event rate
	// times max_age times that, less what compression saves.
	MaxAge Duration `yaml:"max_age"`
	// MaxBytes bounds the archive's size, counted before compression, so
	// its files never take more disk than this; the oldest events go
	// first. Default 0 (no size limit; with max_age also 0 the archive is
	// off). Set it whenever max_age is long: it is what keeps a burst from
	// filling the disk (bus.embedded.max_store bounds all streams together).
	// Memory does not grow with either limit, as long as memory_limit is
	// set (the default): herald's peak RSS with the archive stayed within
	// the noise of runs without it, also while replaying a million events.
	// With memory_limit 0 it does: in runs of a million events the peak
	// RSS was 490 to 625 MiB against 325 to 340 MiB without the archive,
	// and the heap still held about 100 MiB more after 20s idle.
	MaxBytes Size `yaml:"max_bytes"`
	// Compression of the archive's files: s2 or none. s2 compresses each
	// block of the files once it is full, at a little CPU; on the
	// benchmark's lines (repetitive: real logs compress less) it cut 524
	// MiB to 45 MiB. Default s2.
	Compression string `yaml:"compression"`
}

// Enabled reports whether the archive is kept.
func (a Archive) Enabled() bool { return a.MaxAge > 0 || a.MaxBytes > 0 }

// Compressed reports whether the archive's files are compressed (s2, the
// default).
func (a Archive) Compressed() bool { return a.Compression != "none" }

func (d *decoder) validateArchive(c *Config) {
	if c.Archive.MaxAge > 0 && c.Archive.MaxAge.D() < time.Minute {
		d.errorf("archive.max_age", "want at least 1m, got %s", c.Archive.MaxAge.D())
	}
	if c.Archive.MaxBytes > 0 && c.Archive.MaxBytes < 1<<20 {
		d.errorf("archive.max_bytes", "want at least 1MiB, got %d", c.Archive.MaxBytes)
	}
	switch c.Archive.Compression {
	case "", "s2", "none":
	default:
		d.errorf("archive.compression", "want s2 or none, got %q", c.Archive.Compression)
	}
}
