package stage

import (
	"strings"
	"sync"
	"time"
)

// Taps records which subjects a `herald tap` watches. A fused hop hands
// events from stage to stage in memory, so nothing crosses those subjects;
// while a tap watches one, the hop publishes a plain NATS copy of what it
// hands on to bus.SubjectTapPrefix + subject. A tap renews its interest
// every few seconds; one that died is forgotten after TapLease.
type Taps struct {
	mu    sync.Mutex
	until map[string]time.Time // pattern → end of interest
}

// TapLease is how long one announcement of a tap keeps copies flowing.
const TapLease = 6 * time.Second

// Watch records a tap's interest in pattern (a NATS subject, wildcards
// allowed) for TapLease.
func (t *Taps) Watch(pattern string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.until == nil {
		t.until = map[string]time.Time{}
	}
	t.until[pattern] = time.Now().Add(TapLease)
}

// Active reports whether a tap watches subject.
func (t *Taps) Active(subject string) bool {
	if t == nil {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.until) == 0 {
		return false
	}
	now := time.Now()
	for p, u := range t.until {
		if now.After(u) {
			delete(t.until, p)
			continue
		}
		if SubjectMatches(p, subject) {
			return true
		}
	}
	return false
}

// SubjectMatches reports whether the NATS subject pattern (tokens "*" and
// a final ">") matches subject.
func SubjectMatches(pattern, subject string) bool {
	for {
		p, prest, pmore := strings.Cut(pattern, ".")
		s, srest, smore := strings.Cut(subject, ".")
		switch {
		case p == ">":
			return true
		case p != "*" && p != s:
			return false
		case !pmore || !smore:
			return pmore == smore
		}
		pattern, subject = prest, srest
	}
}
