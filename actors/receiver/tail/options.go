package tail

import (
	"fmt"
	"path/filepath"
	"regexp"
	"time"

	"github.com/herald-router/herald/actors/receiver/tail/mbox"
	"github.com/herald-router/herald/config"
)

// Option keys.
const (
	fieldPaths          = "paths"
	fieldExclude        = "exclude"
	fieldStartAt        = "start_at"
	fieldFormat         = "format"
	fieldMultilineStart = "multiline.start"
	fieldMaxLines       = "multiline.max_lines"
	fieldMaxMessageSize = "max_message_size"
	fieldPollInterval   = "poll_interval"
	fieldCommitInterval = "commit_interval"
)

// Values of start_at and format.
const (
	StartBeginning = "beginning"
	StartEnd       = "end"
	FormatLines    = "lines"
	FormatMbox     = "mbox"
)

// Options are the keys of a receiver of type file.
type Options struct {
	// Paths are glob patterns of the files to follow (Go's filepath.Match
	// syntax: *, ?, [a-z]; no **), relative to the config file's folder.
	// A file that appears later under a pattern is picked up within
	// poll_interval. Required.
	Paths []string `yaml:"paths"`
	// Exclude are glob patterns of files not to follow even when Paths
	// match them, tried against the whole path and against the file's base
	// name ("*.gz"). Default none.
	Exclude []string `yaml:"exclude"`
	// StartAt is where to start reading a file that has no stored position
	// when herald starts: beginning or end. Files that appear while herald
	// runs are always read from their beginning. Default beginning.
	StartAt string `yaml:"start_at"`
	// Format of the files: lines (a record per line, or per multiline
	// record) or mbox (a record per mail, starting at its From_ line;
	// multiline.start must then be empty). Default lines.
	Format string `yaml:"format"`
	// Multiline joins lines into records such as stack traces.
	Multiline Multiline `yaml:"multiline"`
	// MaxMessageSize: a longer line is cut into pieces of this size, each
	// a record of its own; a multiline record ends once it reaches this
	// size. Default 1MiB.
	MaxMessageSize config.Size `yaml:"max_message_size"`
	// PollInterval is how often the patterns are matched again and idle
	// files checked for new data (a file that is being written is read
	// without pause). Default 250ms.
	PollInterval config.Duration `yaml:"poll_interval"`
	// RotateWait is how long a file that left the patterns (renamed by
	// rotation) or was deleted is still read after its last growth, for
	// writers that have not reopened yet. Default 5s.
	RotateWait config.Duration `yaml:"rotate_wait"`
	// CommitInterval is how often acknowledged read positions are written
	// to the key-value bucket; after a crash at most this much is read
	// again. Positions are always written at a graceful stop. Default 1s.
	CommitInterval config.Duration `yaml:"commit_interval"`
	// TargetMask given to events from this receiver. Default 4 (log).
	TargetMask uint64 `yaml:"target_mask"`
	// Host is the event's host when the record carries none of its own
	// (a plain application log line). Default none.
	Host string `yaml:"host"`
	// Service is the event's service when the record carries none of its
	// own. Default none.
	Service string `yaml:"service"`
}

// Multiline are the keys of a file receiver's multiline joining.
type Multiline struct {
	// Start is a regular expression (Go syntax) that matches the first
	// line of a record, such as '^\d{4}-\d\d-\d\d ' or '^\S'; the lines
	// that do not match are joined to the record before them. Empty means
	// every line is a record. Default empty.
	Start string `yaml:"start"`
	// Timeout ends a record when no line followed it for this long.
	// Default 1s.
	Timeout config.Duration `yaml:"timeout"`
	// MaxLines ends a record that has this many lines. Default 1000.
	MaxLines int `yaml:"max_lines"`
}

// DefaultOptions returns the defaults a config's keys override.
func DefaultOptions() *Options {
	return &Options{
		StartAt:        StartBeginning,
		Format:         FormatLines,
		Multiline:      Multiline{Timeout: config.Duration(time.Second), MaxLines: 1000},
		MaxMessageSize: 1 << 20,
		PollInterval:   config.Duration(250 * time.Millisecond),
		RotateWait:     config.Duration(5 * time.Second),
		CommitInterval: config.Duration(time.Second),
		TargetMask:     4,
	}
}

// Validate reports bad option values; config.Load calls it.
func (o *Options) Validate() []config.FieldError {
	var errs []config.FieldError
	bad := func(field, format string, a ...any) {
		errs = append(errs, config.FieldError{Field: field, Reason: fmt.Sprintf(format, a...)})
	}
	if len(o.Paths) == 0 {
		bad(fieldPaths, "required: at least one glob pattern of files to follow")
	}
	for i, p := range o.Paths {
		if _, err := filepath.Match(p, ""); err != nil || p == "" {
			bad(fmt.Sprintf("%s[%d]", fieldPaths, i), "bad glob pattern %q", p)
		}
	}
	for i, p := range o.Exclude {
		if _, err := filepath.Match(p, ""); err != nil || p == "" {
			bad(fmt.Sprintf("%s[%d]", fieldExclude, i), "bad glob pattern %q", p)
		}
	}
	if o.StartAt != StartBeginning && o.StartAt != StartEnd {
		bad(fieldStartAt, "want beginning or end, got %q", o.StartAt)
	}
	switch o.Format {
	case FormatLines:
	case FormatMbox:
		if o.Multiline.Start != "" {
			bad(fieldMultilineStart, "format mbox starts records at From_ lines; leave multiline.start empty")
		}
	default:
		bad(fieldFormat, "want lines or mbox, got %q", o.Format)
	}
	if o.Multiline.Start != "" {
		if _, err := regexp.Compile(o.Multiline.Start); err != nil {
			bad(fieldMultilineStart, "bad regular expression: %v", err)
		}
	}
	if o.Multiline.MaxLines < 1 {
		bad(fieldMaxLines, "want at least 1, got %d", o.Multiline.MaxLines)
	}
	if o.MaxMessageSize < 64 || o.MaxMessageSize > 16<<20 {
		bad(fieldMaxMessageSize, "want 64B to 16MiB, got %d", o.MaxMessageSize)
	}
	if o.PollInterval.D() < time.Millisecond {
		bad(fieldPollInterval, "want at least 1ms, got %s", o.PollInterval.D())
	}
	if o.CommitInterval.D() < time.Millisecond {
		bad(fieldCommitInterval, "want at least 1ms, got %s", o.CommitInterval.D())
	}
	return errs
}

// startPattern is the regular expression that starts a record, or nil.
func (o *Options) startPattern() *regexp.Regexp {
	switch {
	case o.Format == FormatMbox:
		return regexp.MustCompile(mbox.FromLinePattern)
	case o.Multiline.Start != "":
		return regexp.MustCompile(o.Multiline.Start)
	}
	return nil
}
