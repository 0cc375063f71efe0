package elapi

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Option configures a Dispatcher; see Dial. An invalid value is an error
// wrapping ErrInvalidOption.
type Option func(*options) error

// Backpressure says what LogAsync does when WithMaxInFlight events are in
// flight.
type Backpressure uint8

const (
	// BlockWhenFull waits until an event in flight finishes (or the
	// dispatcher closes). The default.
	BlockWhenFull Backpressure = iota
	// FailWhenFull returns ErrFull at once.
	FailWhenFull
)

type options struct {
	app            string
	class          string
	host           string
	maxInFlight    int
	backpressure   Backpressure
	batchEvents    int
	batchBytes     int
	linger         time.Duration
	publishTimeout time.Duration
	natsOptions    []nats.Option
	log            *slog.Logger
}

func defaultOptions() options {
	host, _ := os.Hostname()
	return options{
		app:            subjectToken(filepath.Base(os.Args[0])),
		class:          "app",
		host:           host,
		maxInFlight:    16384,
		batchEvents:    1000,
		batchBytes:     512 << 10,
		linger:         2 * time.Millisecond,
		publishTimeout: 5 * time.Second,
		log:            slog.New(slog.DiscardHandler),
	}
}

// WithApplication names the application: the envelope's service of its
// events (unless an event sets AttrApp) and a part of its receipt subject,
// so it must be one NATS subject token (no dots, spaces or wildcards).
// Default: the program's file name, with such characters replaced by "_".
func WithApplication(name string) Option {
	return func(o *options) error {
		if name == "" || subjectToken(name) != name {
			return fmt.Errorf("%w: application %q: want a name without dots, spaces, * or >", ErrInvalidOption, name)
		}
		o.app = name
		return nil
	}
}

// WithClass sets the class of the events, which is also the subject they
// are published to: herald.events.<class>. Default "app".
func WithClass(class string) Option {
	return func(o *options) error {
		if class == "" || subjectToken(class) != class {
			return fmt.Errorf("%w: class %q: want a name without dots, spaces, * or >", ErrInvalidOption, class)
		}
		o.class = class
		return nil
	}
}

// WithHost sets the host of events that do not set AttrHost. Default: the
// machine's host name.
func WithHost(host string) Option {
	return func(o *options) error { o.host = host; return nil }
}

// WithMaxInFlight bounds the events logged and not yet finished: an
// untracked event until JetStream stored it, a tracked one until every
// target is done with it. Memory is bounded by it. Default 16384.
func WithMaxInFlight(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("%w: max in flight %d: want at least 1", ErrInvalidOption, n)
		}
		o.maxInFlight = n
		return nil
	}
}

// WithBackpressure chooses what LogAsync does when the in-flight bound is
// reached. Default BlockWhenFull.
func WithBackpressure(b Backpressure) Option {
	return func(o *options) error {
		if b > FailWhenFull {
			return fmt.Errorf("%w: backpressure %d", ErrInvalidOption, b)
		}
		o.backpressure = b
		return nil
	}
}

// WithBatching sets how events are grouped into JetStream messages: at most
// maxEvents events or maxBytes bytes (capped at the server's max payload)
// per message, sent when full or linger after its first event. Log sends
// at once. Defaults 1000 events, 512KiB, 2ms.
func WithBatching(maxEvents, maxBytes int, linger time.Duration) Option {
	return func(o *options) error {
		if maxEvents < 1 || maxBytes < 1024 || linger < 0 {
			return fmt.Errorf("%w: batching %d events, %d bytes, linger %s: want at least 1 event, 1024 bytes and a linger of 0 or more",
				ErrInvalidOption, maxEvents, maxBytes, linger)
		}
		o.batchEvents, o.batchBytes, o.linger = maxEvents, maxBytes, linger
		return nil
	}
}

// WithPublishTimeout bounds the wait for JetStream's acknowledgement of a
// batch; after it the batch is sent again under the same Nats-Msg-Id
// (stored once). Default 5s.
func WithPublishTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("%w: publish timeout %s: want a positive duration", ErrInvalidOption, d)
		}
		o.publishTimeout = d
		return nil
	}
}

// WithNATSOptions adds options of the NATS connection (credentials, TLS,
// ...). The dispatcher sets its name and reconnects for ever by default;
// options given here come after and win.
func WithNATSOptions(opts ...nats.Option) Option {
	return func(o *options) error { o.natsOptions = append(o.natsOptions, opts...); return nil }
}

// WithLogger sets where the dispatcher reports what it retries (a lost
// connection, a batch sent again). Default: nowhere.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", ErrInvalidOption)
		}
		o.log = l
		return nil
	}
}

// subjectToken replaces what cannot be in one NATS subject token.
func subjectToken(s string) string {
	if s == "" {
		return "app"
	}
	return strings.Map(func(r rune) rune {
		if r <= ' ' || r == '.' || r == '*' || r == '>' || r == 0x7f {
			return '_'
		}
		return r
	}, s)
}

// LogOption changes one Log call.
type LogOption func(*logOptions)

type logOptions struct {
	all bool
}

// WaitAllTargets makes Log wait until every target the event was routed to
// committed it or gave up on it, and return each outcome, instead of
// returning when JetStream stored it.
func WaitAllTargets() LogOption { return func(o *logOptions) { o.all = true } }
