// Package natssink is the nats sink provider: it republishes each event,
// as JSON, to a NATS subject — through JetStream with an acknowledgement
// per event (the default), or as core NATS messages. The event id is the
// Nats-Msg-Id, so a stream de-duplicates a redelivered batch.
package natssink

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-router/herald/actors/sink"
	"github.com/herald-router/herald/actors/sink/format"
	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/schemas"
)

// Option keys.
const (
	fieldSubject = "subject"
	fieldURLs    = "urls"
)

// Options are the keys of a sink of type nats.
type Options struct {
	// Subject to publish to. "{class}" in it is replaced by the event's
	// class, e.g. "alerts.{class}". Required.
	Subject string `yaml:"subject"`
	// URLs of the NATS system to publish to. Default: herald's own bus.
	URLs []string `yaml:"urls"`
	// JetStream publishes with an acknowledgement per event: an event is
	// committed only when a stream stored it, and the subject must belong
	// to a stream. False publishes core NATS messages, which are committed
	// once flushed to the server, with no guarantee that anyone received
	// them. Default true.
	JetStream bool `yaml:"jetstream"`
	// Timeout for the acknowledgements of one transaction (or the flush).
	// Default 10s.
	Timeout config.Duration `yaml:"timeout"`
}

// DefaultOptions returns the defaults a config's keys override.
func DefaultOptions() *Options {
	return &Options{JetStream: true, Timeout: config.Duration(10 * time.Second)}
}

// Validate reports bad option values; config.Load calls it.
func (o *Options) Validate() []config.FieldError {
	var errs []config.FieldError
	subj := strings.ReplaceAll(o.Subject, "{class}", "x")
	switch {
	case o.Subject == "":
		errs = append(errs, config.FieldError{Field: fieldSubject, Reason: "required: the subject to publish to"})
	case strings.ContainsAny(subj, " \t\r\n*>") || strings.Contains(subj, "..") || strings.HasPrefix(subj, ".") || strings.HasSuffix(subj, "."):
		errs = append(errs, config.FieldError{Field: fieldSubject, Reason: fmt.Sprintf("%q is not a valid subject to publish to (no spaces, wildcards or empty tokens)", o.Subject)})
	}
	for i, u := range o.URLs {
		if !strings.Contains(u, "://") {
			errs = append(errs, config.FieldError{Field: fmt.Sprintf("%s[%d]", fieldURLs, i), Reason: fmt.Sprintf("want a URL such as nats://host:4222, got %q", u)})
		}
	}
	return errs
}

// Register adds the nats provider to r.
func Register(r *sink.Registry) {
	r.MustAdd("nats", sink.Kind{
		Options: func() any { return DefaultOptions() },
		New: func(env sink.Env, o any) (sink.Provider, error) {
			return New(*o.(*Options), env.NATS), nil
		},
	})
}

// Publisher is the nats provider.
type Publisher struct {
	opts    Options
	shared  *nats.Conn // herald's own connection; never closed here
	nc      *nats.Conn // the connection in use
	js      jetstream.JetStream
	futures []jetstream.PubAckFuture
	buf     []byte
}

// New returns a Publisher. shared is used when opts.URLs is empty.
func New(opts Options, shared *nats.Conn) *Publisher {
	return &Publisher{opts: opts, shared: shared}
}

// Begin connects if needed.
func (p *Publisher) Begin(ctx context.Context) error {
	p.futures = p.futures[:0]
	if p.nc != nil {
		return nil
	}
	nc := p.shared
	if len(p.opts.URLs) > 0 {
		var err error
		// No reconnect buffer: a publish while disconnected must fail, not
		// wait in memory where a crash would lose it.
		nc, err = nats.Connect(strings.Join(p.opts.URLs, ","), nats.Name("herald-sink"),
			nats.MaxReconnects(-1), nats.ReconnectBufSize(-1), nats.Timeout(p.opts.Timeout.D()))
		if err != nil {
			return fmt.Errorf("connect %s: %w", strings.Join(p.opts.URLs, ","), err)
		}
	}
	if nc == nil {
		return errors.New("no NATS connection: give urls")
	}
	js, err := jetstream.New(nc)
	if err != nil {
		if nc != p.shared {
			nc.Close()
		}
		return fmt.Errorf("jetstream: %w", err)
	}
	p.nc, p.js = nc, js
	return nil
}

func (p *Publisher) subject(ev *schemas.Event) string {
	if !strings.Contains(p.opts.Subject, "{class}") {
		return p.opts.Subject
	}
	class := ev.Class
	if class == "" || strings.ContainsAny(class, " \t\r\n*>.") {
		class = "unknown"
	}
	return strings.ReplaceAll(p.opts.Subject, "{class}", class)
}

// Do publishes ev; it is committed at End, when every acknowledgement (or
// the flush) has come back.
func (p *Publisher) Do(ctx context.Context, ev *schemas.Event) (sink.Commit, error) {
	p.buf = format.AppendJSON(p.buf[:0], ev)
	m := nats.NewMsg(p.subject(ev))
	m.Data = append([]byte(nil), p.buf[:len(p.buf)-1]...) // without the newline
	if ev.Id != "" {
		m.Header.Set(jetstream.MsgIDHeader, ev.Id)
	}
	if len(m.Data) > int(p.nc.MaxPayload())-1024 {
		return 0, sink.Permanent("too_big", fmt.Errorf("event of %d bytes exceeds the server's max payload %d", len(m.Data), p.nc.MaxPayload()))
	}
	if !p.opts.JetStream {
		if err := p.nc.PublishMsg(m); err != nil {
			return 0, fmt.Errorf("publish %s: %w", m.Subject, err)
		}
		return sink.Deferred, nil
	}
	f, err := p.js.PublishMsgAsync(m)
	if err != nil {
		return 0, fmt.Errorf("publish %s: %w", m.Subject, err)
	}
	p.futures = append(p.futures, f)
	return sink.Deferred, nil
}

// End waits for the acknowledgements (or flushes core NATS).
func (p *Publisher) End(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout.D())
	defer cancel()
	if !p.opts.JetStream {
		if err := p.nc.FlushWithContext(ctx); err != nil {
			return fmt.Errorf("flush: %w", err)
		}
		return nil
	}
	for _, f := range p.futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
				return fmt.Errorf("publish %s: no stream stored it (is the subject in a stream?): %w", f.Msg().Subject, err)
			}
			return fmt.Errorf("publish %s: %w", f.Msg().Subject, err)
		case <-ctx.Done():
			return fmt.Errorf("waiting for acknowledgements: %w", ctx.Err())
		}
	}
	p.futures = p.futures[:0]
	return nil
}

// Close closes a connection the provider made itself. It is idempotent.
func (p *Publisher) Close(ctx context.Context) error {
	if p.nc != nil && p.nc != p.shared {
		p.nc.Close()
	}
	p.nc, p.js = nil, nil
	return nil
}

var _ sink.Provider = (*Publisher)(nil)
