package receiver

import (
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/herald-router/herald/config"
)

// MultilineOptions join the lines of a stream connection into records: a
// line matching Start begins a record, and the lines after it belong to it
// (a stack trace after its first line). Without Start each line is a record.
type MultilineOptions struct {
	// Start is a regular expression (Go syntax) matching the first line
	// of a record, e.g. '^<\d+>' or '^\d{4}-\d\d-\d\d'. Default none (no
	// joining).
	Start string `yaml:"start"`
	// Timeout sends a record once no line has come for this long.
	// Default 1s.
	Timeout config.Duration `yaml:"timeout"`
	// MaxLines sends a record once it has this many lines. Default 500.
	MaxLines int `yaml:"max_lines"`
}

// DefaultMultilineOptions returns the defaults.
func DefaultMultilineOptions() MultilineOptions {
	return MultilineOptions{Timeout: config.Duration(time.Second), MaxLines: 500}
}

// check reports bad values, with keys relative to the receiver.
func (m MultilineOptions) check() []config.FieldError {
	var errs []config.FieldError
	if m.Start != "" {
		if _, err := regexp.Compile(m.Start); err != nil {
			errs = append(errs, config.FieldError{Field: "multiline.start", Reason: fmt.Sprintf("not a regular expression: %v", err)})
		}
	}
	if m.Timeout.D() < time.Millisecond || m.Timeout.D() > time.Minute {
		errs = append(errs, config.FieldError{Field: "multiline.timeout", Reason: fmt.Sprintf("want 1ms to 1m, got %s", m.Timeout.D())})
	}
	if m.MaxLines < 1 {
		errs = append(errs, config.FieldError{Field: "multiline.max_lines", Reason: fmt.Sprintf("want at least 1, got %d", m.MaxLines)})
	}
	return errs
}

// joiner joins one connection's lines into records. Lines come from the
// connection's reader; the timeout fires from a timer goroutine, hence the
// lock.
type joiner struct {
	start    *regexp.Regexp
	timeout  time.Duration
	maxLines int
	maxBytes int
	emit     func([]byte)

	mu    sync.Mutex
	rec   []byte
	lines int
	timer *time.Timer
}

func newJoiner(start *regexp.Regexp, o MultilineOptions, maxBytes int, emit func([]byte)) *joiner {
	return &joiner{start: start, timeout: o.Timeout.D(), maxLines: o.MaxLines, maxBytes: maxBytes, emit: emit}
}

// line takes one line (valid only during the call).
func (j *joiner) line(l []byte) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.lines > 0 && (j.start.Match(l) || len(j.rec)+1+len(l) > j.maxBytes) {
		j.flushLocked()
	}
	if j.lines > 0 {
		j.rec = append(j.rec, '\n')
	}
	j.rec = append(j.rec, l...)
	j.lines++
	if j.lines >= j.maxLines {
		j.flushLocked()
		return
	}
	if j.timer == nil {
		j.timer = time.AfterFunc(j.timeout, j.flush)
	} else {
		j.timer.Reset(j.timeout)
	}
}

func (j *joiner) flush() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.flushLocked()
}

// flushLocked sends the record being joined. Lock must be held.
func (j *joiner) flushLocked() {
	if j.lines == 0 {
		return
	}
	j.emit(j.rec)
	j.rec, j.lines = j.rec[:0], 0
}

// close sends what is left and stops the timer.
func (j *joiner) close() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.timer != nil {
		j.timer.Stop()
	}
	j.flushLocked()
}
