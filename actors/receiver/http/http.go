package http

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-router/herald/actors/receiver"
	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/internal/ids"
	"github.com/herald-router/herald/internal/metrics"
	"github.com/herald-router/herald/schemas"
)

// Path is where events are posted.
const Path = "/ingest"

// Option keys.
const (
	fieldListen         = "listen"
	fieldMaxBodySize    = "max_body_size"
	fieldMaxMessageSize = "max_message_size"
	fieldMaxInFlight    = "max_in_flight"
	fieldTimeout        = "timeout"
)

// Options are the keys of a receiver of type http.
type Options struct {
	// Listen address, such as 127.0.0.1:8080. Required.
	Listen string `yaml:"listen"`
	// Token, when set, is the bearer token every request must carry
	// ("Authorization: Bearer <token>"); others get 401. Default none (no
	// authentication: listen on a trusted address).
	Token string `yaml:"token"`
	// MaxBodySize: a larger request body is refused with 413. Default 16MiB.
	MaxBodySize config.Size `yaml:"max_body_size"`
	// MaxMessageSize: a longer text/plain line is refused with 400.
	// Default 1MiB.
	MaxMessageSize config.Size `yaml:"max_message_size"`
	// MaxInFlight is how many requests may be read and stored at once;
	// more are answered 429 at once, so a sender sees herald's
	// back-pressure instead of waiting. Default 64.
	MaxInFlight int `yaml:"max_in_flight"`
	// Timeout bounds reading a request's body and waiting for JetStream to
	// store its events; then the answer is 503. While JetStream's store is
	// full (its limit reached) posts are answered 503 at once, with the
	// limit in the answer and Retry-After 5, and nothing of them is kept;
	// a text/plain post already waiting when the store filled is answered
	// 503 at the timeout, and its records stay queued and are stored once
	// there is room (a sender that retries it may deliver them twice).
	// Default 30s.
	Timeout config.Duration `yaml:"timeout"`
	// TargetMask given to text/plain records (JSON events carry their own
	// target_mask, default 4). Default 4 (log).
	TargetMask uint64 `yaml:"target_mask"`
}

// DefaultOptions returns the defaults a config's keys override.
func DefaultOptions() *Options {
	return &Options{MaxBodySize: 16 << 20, MaxMessageSize: 1 << 20, MaxInFlight: 64,
		Timeout: config.Duration(30 * time.Second), TargetMask: 4}
}

// Validate reports bad option values; config.Load calls it.
func (o *Options) Validate() []config.FieldError {
	var errs []config.FieldError
	bad := func(field, format string, a ...any) {
		errs = append(errs, config.FieldError{Field: field, Reason: fmt.Sprintf(format, a...)})
	}
	if o.Listen == "" {
		bad(fieldListen, "required: the address to listen on, such as 127.0.0.1:8080")
	} else if _, _, err := net.SplitHostPort(o.Listen); err != nil {
		bad(fieldListen, "want host:port, got %q", o.Listen)
	}
	if o.MaxBodySize < 1024 {
		bad(fieldMaxBodySize, "want at least 1KiB, got %d", o.MaxBodySize)
	}
	if o.MaxMessageSize < 64 || o.MaxMessageSize > 16<<20 {
		bad(fieldMaxMessageSize, "want 64B to 16MiB, got %d", o.MaxMessageSize)
	}
	if o.MaxInFlight < 1 {
		bad(fieldMaxInFlight, "want at least 1, got %d", o.MaxInFlight)
	}
	if o.Timeout.D() < time.Millisecond {
		bad(fieldTimeout, "want at least 1ms, got %s", o.Timeout.D())
	}
	return errs
}

// Register adds the HTTP receiver to r.
func Register(r *receiver.Registry) {
	r.MustAdd("http", receiver.Kind{
		Options: func() any { return DefaultOptions() },
		New: func(env receiver.Env, o any) (receiver.Listener, error) {
			maxBytes := 256 << 10
			if env.Config != nil {
				maxBytes = int(env.Config.Batch.MaxBytes)
			}
			return New(env.Name, *o.(*Options), env.Bus, env.Batcher, env.Metrics, env.Log, maxBytes), nil
		},
	})
}

// Receiver is one HTTP receiver.
type Receiver struct {
	name     string
	opts     Options
	bus      *bus.Bus
	batcher  *receiver.Batcher
	m        *metrics.Stage
	log      *slog.Logger
	maxBytes int // of one published message

	slots    chan struct{}
	closing  atomic.Bool
	ln       net.Listener
	srv      *http.Server
	served   sync.WaitGroup
	shutOnce sync.Once
}

// New returns a receiver; Listen binds its address.
func New(name string, o Options, b *bus.Bus, bt *receiver.Batcher, m *metrics.Stage, log *slog.Logger, maxBytes int) *Receiver {
	r := &Receiver{name: name, opts: o, bus: b, batcher: bt, m: m, log: log.With("receiver", name),
		maxBytes: maxBytes, slots: make(chan struct{}, o.MaxInFlight)}
	mux := http.NewServeMux()
	mux.HandleFunc(Path, r.ingest)
	r.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(r.log.Handler(), slog.LevelDebug),
	}
	return r
}

// Listen binds the address; a taken one fails the start.
func (r *Receiver) Listen() error {
	ln, err := net.Listen("tcp", r.opts.Listen)
	if err != nil {
		return fmt.Errorf("receiver %s: listen %s: %w", r.name, r.opts.Listen, err)
	}
	r.ln = ln
	return nil
}

// Addr is the bound address (useful with port 0).
func (r *Receiver) Addr() net.Addr { return r.ln.Addr() }

// Serve starts answering requests.
func (r *Receiver) Serve() {
	r.served.Add(1)
	go func() {
		defer r.served.Done()
		if err := r.srv.Serve(r.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Error("http receiver stopped", "err", err)
		}
	}()
}

// Shutdown stops accepting requests and waits, bounded by ctx, for those
// in hand to be stored and answered.
func (r *Receiver) Shutdown(ctx context.Context) {
	r.shutOnce.Do(func() {
		r.closing.Store(true)
		if err := r.srv.Shutdown(ctx); err != nil {
			r.log.Warn("http requests still running at shutdown", "err", err)
			_ = r.srv.Close()
		}
		r.served.Wait()
	})
}

// answer writes a JSON answer: {"accepted": n} or {"error": reason}.
func answer(w http.ResponseWriter, code int, accepted int, reason string) {
	w.Header().Set("Content-Type", "application/json")
	if (code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable) && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(code)
	var body []byte
	if reason == "" {
		body, _ = json.Marshal(map[string]int{"accepted": accepted})
	} else {
		body, _ = json.Marshal(map[string]string{"error": reason})
	}
	_, _ = w.Write(append(body, '\n'))
}

func (r *Receiver) ingest(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		answer(w, http.StatusMethodNotAllowed, 0, "use POST")
		return
	}
	if r.opts.Token != "" && !r.authorized(req) {
		r.m.Rejected("unauthorized", 1)
		w.Header().Set("WWW-Authenticate", `Bearer realm="herald"`)
		answer(w, http.StatusUnauthorized, 0, "missing or wrong bearer token")
		return
	}
	select {
	case r.slots <- struct{}{}:
		defer func() { <-r.slots }()
	default:
		r.m.Rejected("saturated", 1)
		answer(w, http.StatusTooManyRequests, 0, "herald is saturated: "+strconv.Itoa(r.opts.MaxInFlight)+" requests in flight; retry later")
		return
	}
	if r.closing.Load() {
		answer(w, http.StatusServiceUnavailable, 0, "herald is shutting down")
		return
	}
	if err := r.batcher.StoreFull(); err != nil {
		r.refuseStoreFull(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(req.Context(), r.opts.Timeout.D())
	defer cancel()
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(r.opts.Timeout.D()))
	data, err := io.ReadAll(http.MaxBytesReader(w, req.Body, int64(r.opts.MaxBodySize)))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			r.m.Rejected("too_long", 1)
			answer(w, http.StatusRequestEntityTooLarge, 0, fmt.Sprintf("body over %d bytes", r.opts.MaxBodySize))
			return
		}
		answer(w, http.StatusBadRequest, 0, "reading the body: "+err.Error())
		return
	}
	now := time.Now()
	peer := req.RemoteAddr
	ct, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type"))
	switch ct {
	case "", "application/json", "application/x-ndjson", "application/jsonl", "application/x-jsonlines", "application/ndjson":
		events, err := parseEvents(data, now)
		if err != nil {
			r.m.Rejected("bad_request", 1)
			answer(w, http.StatusBadRequest, 0, err.Error())
			return
		}
		for _, ev := range events {
			ev.Source, ev.Peer = r.name, peer
		}
		r.m.Received.Add(float64(len(events)))
		if err := r.publishEvents(ctx, events, now); err != nil {
			if errors.Is(err, receiver.ErrStoreFull) {
				r.refuseStoreFull(w, err)
				return
			}
			r.log.Warn("events not stored", "peer", peer, "err", err)
			answer(w, http.StatusServiceUnavailable, 0, "not stored: "+err.Error())
			return
		}
		r.m.Published.Add(float64(len(events)))
		answer(w, http.StatusOK, len(events), "")
	case "text/plain":
		events, err := r.parseLines(data, now, peer)
		if err != nil {
			r.m.Rejected("bad_request", 1)
			answer(w, http.StatusBadRequest, 0, err.Error())
			return
		}
		r.m.Received.Add(float64(len(events)))
		if err := r.publishRaw(ctx, events); err != nil {
			r.log.Warn("records not stored", "peer", peer, "err", err)
			if errors.Is(err, receiver.ErrStoreFull) {
				r.m.Rejected(receiver.RejectStoreFull, 1)
				w.Header().Set("Retry-After", storeFullRetryAfter)
			}
			answer(w, http.StatusServiceUnavailable, 0, "not stored: "+err.Error())
			return
		}
		answer(w, http.StatusOK, len(events), "")
	default:
		r.m.Rejected("bad_request", 1)
		answer(w, http.StatusUnsupportedMediaType, 0, "Content-Type "+ct+": want application/json, application/x-ndjson or text/plain")
	}
}

// storeFullRetryAfter is the Retry-After of a post refused for a full
// store, in seconds: room comes as the pipeline drains, not at once.
const storeFullRetryAfter = "5"

// refuseStoreFull answers 503 naming the store limit that was reached.
// The log line is the batcher's (rate-limited); this is counted.
func (r *Receiver) refuseStoreFull(w http.ResponseWriter, err error) {
	r.m.Rejected(receiver.RejectStoreFull, 1)
	w.Header().Set("Retry-After", storeFullRetryAfter)
	answer(w, http.StatusServiceUnavailable, 0, "not stored, retry later: "+err.Error())
}

func (r *Receiver) authorized(req *http.Request) bool {
	h := req.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(h) < len(prefix) || !bytesEqualFold(h[:len(prefix)], prefix) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(h[len(prefix):]), []byte(r.opts.Token)) == 1
}

func bytesEqualFold(a, b string) bool { return bytes.EqualFold([]byte(a), []byte(b)) }

// defaultClass is the class of JSON events that name none, as on NATS.
const defaultClass = "app"

// parseEvents reads a JSON object, an array of objects, or NDJSON.
func parseEvents(data []byte, now time.Time) ([]*schemas.Event, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, errors.New("empty body: want JSON events")
	}
	var events []*schemas.Event
	if trimmed[0] == '[' || json.Valid(trimmed) {
		// One object (perhaps pretty-printed over lines) or an array.
		evs, err := bus.ParseJSONEvents(trimmed, defaultClass, now)
		if err != nil {
			return nil, err
		}
		events = evs
	} else {
		// NDJSON: one object per line.
		n := 0
		for len(data) > 0 {
			line := data
			if i := bytes.IndexByte(data, '\n'); i >= 0 {
				line, data = data[:i], data[i+1:]
			} else {
				data = nil
			}
			n++
			line = bytes.TrimSpace(line)
			if len(line) == 0 {
				continue
			}
			evs, err := bus.ParseJSONEvents(line, defaultClass, now)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			events = append(events, evs...)
		}
	}
	for i, ev := range events {
		if !classOK(ev.Class) {
			return nil, fmt.Errorf("event %d: class %q: use letters, digits, _ and -", i, ev.Class)
		}
	}
	return events, nil
}

// classOK reports whether c can be a subject token.
func classOK(c string) bool {
	if c == "" || len(c) > 64 {
		return false
	}
	for _, r := range c {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// publishEvents stores events on herald.events.<class>, one message (or
// a few, by size) per class, and waits for JetStream's acknowledgements.
func (r *Receiver) publishEvents(ctx context.Context, events []*schemas.Event, now time.Time) error {
	var order []string
	byClass := map[string][]*schemas.Event{}
	for _, ev := range events {
		if _, ok := byClass[ev.Class]; !ok {
			order = append(order, ev.Class)
		}
		byClass[ev.Class] = append(byClass[ev.Class], ev)
	}
	id := "http." + ids.New(now)
	for i, class := range order {
		msgs, err := bus.EncodeBatches(bus.EventsSubject(class), id+"."+strconv.Itoa(i), byClass[class], r.maxBytes)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			f, err := r.bus.PublishAsync(ctx, m)
			if err != nil {
				return err
			}
			if err := r.confirm(ctx, f); err != nil {
				return err
			}
		}
	}
	return nil
}

// confirm waits for f's acknowledgement. A full store refuses the post at
// once (its sender is told to retry); another failure is retried as
// bus.Confirm does, until ctx ends.
func (r *Receiver) confirm(ctx context.Context, f jetstream.PubAckFuture) error {
	select {
	case <-f.Ok():
		r.batcher.Stored()
		return nil
	case err := <-f.Err():
		if receiver.IsStoreFull(err) {
			return r.batcher.StoreRefused(f.Msg().Subject, err)
		}
		if err := r.bus.Publish(ctx, f.Msg()); err != nil {
			return err
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for the store: %w", ctx.Err())
	}
}

// parseLines makes one raw record of each non-empty line.
func (r *Receiver) parseLines(data []byte, now time.Time, peer string) ([]*schemas.Event, error) {
	var events []*schemas.Event
	n := 0
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		n++
		if len(bytes.TrimRight(line, "\r")) == 0 {
			continue
		}
		if len(line) > int(r.opts.MaxMessageSize) {
			return nil, fmt.Errorf("line %d: %d bytes, over max_message_size %d", n, len(line), r.opts.MaxMessageSize)
		}
		events = append(events, &schemas.Event{Raw: bytes.Clone(line), Source: r.name, Peer: peer,
			ReceivedUnixNano: now.UnixNano(), TargetMask: r.opts.TargetMask})
	}
	if len(events) == 0 {
		return nil, errors.New("empty body: want one record per line")
	}
	return events, nil
}

// publishRaw hands records to the batcher and waits until every one is
// stored.
func (r *Receiver) publishRaw(ctx context.Context, events []*schemas.Event) error {
	results := make(chan error, len(events))
	added := 0
	for _, ev := range events {
		if !r.batcher.AddConfirmed(ev, func(err error) { results <- err }) {
			return errors.New("herald is shutting down")
		}
		added++
	}
	var firstErr error
	for range added {
		select {
		case err := <-results:
			if err != nil && firstErr == nil {
				firstErr = err
			}
		case <-ctx.Done():
			// The records stay queued and are stored once there is room;
			// a sender that retries may deliver them twice, never zero
			// times.
			if err := r.batcher.StoreFull(); err != nil {
				return fmt.Errorf("waiting for the store: %w: %w", ctx.Err(), err)
			}
			return fmt.Errorf("waiting for the store: %w", ctx.Err())
		}
	}
	return firstErr
}

var _ receiver.Listener = (*Receiver)(nil)
