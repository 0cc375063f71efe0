package xmpp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/config"
)

// windowKeep is the bucket's max age: a window not written for this long
// is dropped. Windows are written whenever a transaction touches them and
// their digests go out at the first transaction after they close, so only
// a sink that sees no event for a week after a crash loses a digest.
const windowKeep = 7 * 24 * time.Hour

// saveParallel bounds the writes of one transaction in flight at once.
const saveParallel = 32

// errMovedOn says another process wrote a window since this one read or
// wrote it: this process lost the sink's lease, and the bucket is newer
// than its memory.
var errMovedOn = errors.New("another process wrote the window")

// windowStore is one sink's view of the bucket bus.KVThrottle. Writes
// are compare-and-set on the revision last read or written, so a process
// that lost the sink's lease never overwrites what the next holder wrote.
type windowStore struct {
	open   func(context.Context) (jetstream.KeyValue, error)
	kv     jetstream.KeyValue
	prefix string // "<sink>."

	mu   sync.Mutex
	revs map[string]uint64 // by bucket key: the revision this process knows
}

// newWindowStore keeps the windows of sink name in the bucket on nc, with
// the replicas and placement of cfg; the bucket is created at first use.
func newWindowStore(nc *nats.Conn, cfg config.Bus, name string, log *slog.Logger) *windowStore {
	return &windowStore{
		prefix: name + ".",
		revs:   map[string]uint64{},
		open: func(ctx context.Context) (jetstream.KeyValue, error) {
			return bus.CreateKeyValue(ctx, nc, cfg, log, jetstream.KeyValueConfig{
				Bucket:      bus.KVThrottle,
				Description: "throttle windows of herald's xmpp sinks, so that a takeover continues them",
				History:     1,
				TTL:         windowKeep,
				Storage:     jetstream.FileStorage,
			})
		},
	}
}

func (s *windowStore) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	if s.kv == nil {
		kv, err := s.open(ctx)
		if err != nil {
			return nil, err
		}
		s.kv = kv
	}
	return s.kv, nil
}

// kvKey is the bucket key of throttle key k: a hash, since k holds any
// bytes and may be long; the value holds k itself.
func (s *windowStore) kvKey(k string) string {
	h := sha256.Sum256([]byte(k))
	return s.prefix + hex.EncodeToString(h[:16])
}

// storedWindow is a window as the bucket holds it, in JSON.
type storedWindow struct {
	Key    []byte      `json:"key"` // bytes: a key need not be UTF-8
	Label  string      `json:"label"`
	Start  time.Time   `json:"start"`
	Sent   int         `json:"sent"`
	Folded int         `json:"folded,omitempty"`
	First  *storedFold `json:"first,omitempty"`
	Last   *storedFold `json:"last,omitempty"`
}

type storedFold struct {
	ID   string `json:"id"`
	Body string `json:"body"`
}

func encodeWindow(w *window) ([]byte, error) {
	sw := storedWindow{Key: []byte(w.key), Label: w.label, Start: w.start, Sent: w.sent, Folded: w.folded}
	if w.firstSet {
		sw.First = &storedFold{ID: w.first.id, Body: w.first.body}
		sw.Last = &storedFold{ID: w.last.id, Body: w.last.body}
	}
	return json.Marshal(sw)
}

func decodeWindow(data []byte) (*window, error) {
	var sw storedWindow
	if err := json.Unmarshal(data, &sw); err != nil {
		return nil, err
	}
	w := &window{key: string(sw.Key), label: sw.Label, start: sw.Start, sent: sw.Sent, folded: sw.Folded}
	if sw.First != nil && sw.Last != nil {
		w.first, w.last, w.firstSet = folded{sw.First.ID, sw.First.Body}, folded{sw.Last.ID, sw.Last.Body}, true
	}
	if w.folded > 0 && !w.firstSet {
		return nil, errors.New("folded events without the first and last")
	}
	return w, nil
}

// load reads every window of the sink, by throttle key. A value it cannot
// read is skipped (logged): that key starts a fresh window.
func (s *windowStore) load(ctx context.Context, log *slog.Logger) (map[string]*window, error) {
	kv, err := s.bucket(ctx)
	if err != nil {
		return nil, err
	}
	w, err := kv.Watch(ctx, s.prefix+"*", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("read windows: %w", err)
	}
	defer func() { _ = w.Stop() }()
	out := map[string]*window{}
	revs := map[string]uint64{}
	s.mu.Lock()
	s.revs = revs
	s.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("read windows: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok || e == nil { // nil: caught up with what is stored
				return out, nil
			}
			s.mu.Lock()
			revs[e.Key()] = e.Revision()
			s.mu.Unlock()
			win, err := decodeWindow(e.Value())
			if err == nil && s.kvKey(win.key) != e.Key() {
				err = errors.New("the value's key hashes to another key")
			}
			if err != nil {
				log.Warn("xmpp throttle window unreadable; its key starts afresh", "key", e.Key(), "err", err)
				continue
			}
			out[win.key] = win
		}
	}
}

// save writes each window of changes (nil: the window ended, its key is
// deleted), all at once, and returns the keys written. It gives up on
// the rest when ctx ends.
func (s *windowStore) save(ctx context.Context, changes map[string]*window) ([]string, error) {
	kv, err := s.bucket(ctx)
	if err != nil {
		return nil, err
	}
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		saved []string
		first error
		fails int
	)
	sem := make(chan struct{}, saveParallel)
	for k, w := range changes {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := s.write(ctx, kv, k, w)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				fails++
				if first == nil || errors.Is(err, errMovedOn) {
					first = err // the one that says the most
				}
				return
			}
			saved = append(saved, k)
		}()
	}
	wg.Wait()
	if first != nil {
		return saved, fmt.Errorf("%d of %d windows not written: %w", fails, len(changes), first)
	}
	return saved, nil
}

func (s *windowStore) write(ctx context.Context, kv jetstream.KeyValue, k string, w *window) error {
	kk := s.kvKey(k)
	s.mu.Lock()
	rev, known := s.revs[kk]
	s.mu.Unlock()
	if w == nil {
		if !known {
			return nil // never stored, or not by this process
		}
		err := kv.Delete(ctx, kk, jetstream.LastRevision(rev))
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("delete window: %w", errMovedOn)
		}
		if err != nil {
			return fmt.Errorf("delete window: %w", err)
		}
		s.mu.Lock()
		delete(s.revs, kk)
		s.mu.Unlock()
		return nil
	}
	data, err := encodeWindow(w)
	if err != nil {
		return fmt.Errorf("encode window: %w", err)
	}
	if known {
		rev, err = kv.Update(ctx, kk, data, rev)
	} else {
		rev, err = kv.Create(ctx, kk, data) // also over a deleted key
	}
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("write window: %w", errMovedOn)
	}
	if err != nil {
		return fmt.Errorf("write window: %w", err)
	}
	s.mu.Lock()
	s.revs[kk] = rev
	s.mu.Unlock()
	return nil
}
