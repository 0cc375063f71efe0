package config

import "time"

// Archive keeps a copy of every resolved event for `herald replay`. It is
// off unless max_age or max_bytes is set. A retained stream costs disk (the
// events, at about their JSON size) and server memory while it is hot: size
// it to what replay needs, not more.
type Archive struct {
	// MaxAge drops archived events older than this, e.g. 24h. Default 0
	// (no age limit; with max_bytes also 0 the archive is off).
	MaxAge Duration `yaml:"max_age"`
	// MaxBytes bounds the archive's size; the oldest events go first.
	// Default 0 (no size limit; with max_age also 0 the archive is off).
	MaxBytes Size `yaml:"max_bytes"`
}

// Enabled reports whether the archive is kept.
func (a Archive) Enabled() bool { return a.MaxAge > 0 || a.MaxBytes > 0 }

func (d *decoder) validateArchive(c *Config) {
	if c.Archive.MaxAge > 0 && c.Archive.MaxAge.D() < time.Minute {
		d.errorf("archive.max_age", "want at least 1m, got %s", c.Archive.MaxAge.D())
	}
	if c.Archive.MaxBytes > 0 && c.Archive.MaxBytes < 1<<20 {
		d.errorf("archive.max_bytes", "want at least 1MiB, got %d", c.Archive.MaxBytes)
	}
}
