package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-router/herald/bus"
)

// DefaultTTL is the lease TTL when Options.TTL is zero.
const DefaultTTL = 5 * time.Second

// MinTTL is the shortest TTL accepted: below it a renewal every TTL/3
// competes with ordinary NATS latencies.
const MinTTL = time.Second

// sinkKeyPrefix starts the key of every sink lease.
const sinkKeyPrefix = "sink."

// SinkKey is the key of the lease of sink name.
func SinkKey(name string) string { return sinkKeyPrefix + name }

// Holder identifies the process holding a lease; it is the key's value,
// in JSON, so that `herald status` can show it.
type Holder struct {
	Host string `json:"host"`
	PID  int    `json:"pid"`
	// Instance is random per process start: it tells a restarted process
	// (same host, maybe the same pid) from the one before it.
	Instance string `json:"instance"`
	// Keeper numbers the keepers of one process: a reload makes new ones,
	// and a newer keeper takes a lease over from an older one of the same
	// process without waiting for it to expire.
	Keeper uint64 `json:"keeper,omitempty"`
	// Since is when the lease was acquired.
	Since time.Time `json:"since"`
}

func (h Holder) String() string {
	return fmt.Sprintf("%s pid %d (instance %s)", h.Host, h.PID, h.Instance)
}

// Self returns the identity of this process with a fresh instance id.
func Self() Holder {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	return Holder{Host: host, PID: os.Getpid(), Instance: hex.EncodeToString(b[:])}
}

// Options configure Open.
type Options struct {
	// TTL is how long a lease outlives a holder that stopped renewing it.
	// Zero means DefaultTTL. The bucket has one TTL: the last process to
	// open it with a different one sets it for all.
	TTL time.Duration
	// Replicas of the bucket's stream; zero means 1.
	Replicas int
	// Placement of the bucket's stream (bus.placement); nil leaves it to
	// the server.
	Placement *jetstream.Placement
	// Self is this process's identity; zero means Self().
	Self Holder
}

// Bucket is this process's handle on the lease bucket.
type Bucket struct {
	kv      jetstream.KeyValue
	ttl     time.Duration
	self    Holder
	keepers atomic.Uint64
}

// Open creates or updates the lease bucket with the TTL and returns a
// handle acting as opts.Self.
func Open(ctx context.Context, js jetstream.JetStream, opts Options) (*Bucket, error) {
	if opts.TTL == 0 {
		opts.TTL = DefaultTTL
	}
	if opts.TTL < MinTTL {
		return nil, fmt.Errorf("lease ttl %s: want at least %s", opts.TTL, MinTTL)
	}
	if opts.Replicas < 1 {
		opts.Replicas = 1
	}
	if opts.Self.Instance == "" {
		opts.Self = Self()
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bus.KVLeases,
		Description: "leases of herald's single-writer sinks: which process drives each",
		TTL:         opts.TTL,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    opts.Replicas,
		Placement:   opts.Placement,
	})
	if err != nil {
		return nil, fmt.Errorf("lease bucket %s: %w", bus.KVLeases, err)
	}
	return &Bucket{kv: kv, ttl: opts.TTL, self: opts.Self}, nil
}

// TTL is the lease TTL this handle works with.
func (b *Bucket) TTL() time.Duration { return b.ttl }

// Self is the identity this handle acquires leases as.
func (b *Bucket) Self() Holder { return b.self }

// Lease is one key this process holds. Its methods are not safe for
// concurrent use.
type Lease struct {
	b     *Bucket
	key   string
	value []byte
	rev   uint64
	// renewed is when the last write that the server confirmed was sent:
	// the key cannot expire before renewed+TTL.
	renewed time.Time
}

// Key is the lease's key.
func (l *Lease) Key() string { return l.key }

// Renewed is when the last confirmed write of the lease was sent; the
// lease is the holder's until at least Renewed()+TTL.
func (l *Lease) Renewed() time.Time { return l.renewed }

// Acquire takes the lease key for this process, or answers a *HeldError
// (errors.Is ErrHeld) naming the holder.
func (b *Bucket) Acquire(ctx context.Context, key string) (*Lease, error) {
	return b.acquire(ctx, key, b.self)
}

func (b *Bucket) acquire(ctx context.Context, key string, h Holder) (*Lease, error) {
	h.Since = time.Now().UTC().Truncate(time.Millisecond)
	value, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("lease %s: %w", key, err)
	}
	sent := time.Now()
	rev, err := b.kv.Create(ctx, key, value)
	if err == nil {
		return &Lease{b: b, key: key, value: value, rev: rev, renewed: sent}, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return nil, fmt.Errorf("acquire lease %s: %w", key, err)
	}
	e, err := b.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		// It expired or was released between the two calls: held by
		// nobody, taken at the next try.
		return nil, &HeldError{Key: key}
	}
	if err != nil {
		return nil, fmt.Errorf("acquire lease %s: read holder: %w", key, err)
	}
	cur, err := decodeHolder(key, e.Value())
	if err != nil {
		return nil, fmt.Errorf("acquire lease %s: %w", key, err)
	}
	if cur.Instance == h.Instance && cur.Keeper < h.Keeper {
		// An older keeper of this very process (before a reload): take
		// over on its revision; it finds out at its next renewal.
		sent = time.Now()
		rev, err := b.kv.Update(ctx, key, value, e.Revision())
		if err == nil {
			return &Lease{b: b, key: key, value: value, rev: rev, renewed: sent}, nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return nil, fmt.Errorf("acquire lease %s: take over from keeper %d: %w", key, cur.Keeper, err)
		}
	}
	return nil, &HeldError{Key: key, By: cur}
}

// Renew extends the lease by the TTL, on the revision held. It answers an
// error wrapping ErrLost when the key is no longer this holder's (it
// expired, perhaps taken over); any other error leaves the lease held until
// Renewed()+TTL at least.
func (l *Lease) Renew(ctx context.Context) error {
	sent := time.Now()
	rev, err := l.b.kv.Update(ctx, l.key, l.value, l.rev)
	if err == nil {
		l.rev, l.renewed = rev, sent
		return nil
	}
	if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("renew lease %s: %w", l.key, err)
	}
	// A renewal that timed out here but was stored all the same leaves
	// the key at a revision this holder does not know: if the value is
	// still exactly its own, nobody else wrote since, and it is held.
	e, gerr := l.b.kv.Get(ctx, l.key)
	if gerr == nil && string(e.Value()) == string(l.value) {
		sent = time.Now()
		if rev, err = l.b.kv.Update(ctx, l.key, l.value, e.Revision()); err == nil {
			l.rev, l.renewed = rev, sent
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return fmt.Errorf("renew lease %s: %w", l.key, err)
		}
	}
	return fmt.Errorf("renew lease %s: %w (%w)", l.key, ErrLost, err)
}

// Release gives the lease up at once (deletes the key on the revision
// held); a lease that was already lost is left to its new holder.
func (l *Lease) Release(ctx context.Context) error {
	err := l.b.kv.Delete(ctx, l.key, jetstream.LastRevision(l.rev))
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("release lease %s: %w", l.key, ErrLost)
	}
	if err != nil {
		return fmt.Errorf("release lease %s: %w", l.key, err)
	}
	return nil
}

// Holders reads who holds each lease now, by key, from the bucket in js;
// an absent bucket means no leases. It creates nothing.
func Holders(ctx context.Context, js jetstream.JetStream) (map[string]Holder, error) {
	kv, err := js.KeyValue(ctx, bus.KVLeases)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return map[string]Holder{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lease bucket %s: %w", bus.KVLeases, err)
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("lease bucket %s: list: %w", bus.KVLeases, err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := map[string]Holder{}
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // expired or released meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("lease %s: %w", k, err)
		}
		h, err := decodeHolder(k, e.Value())
		if err != nil {
			return nil, err
		}
		out[k] = h
	}
	return out, nil
}

// holder reads who holds key now; ok is false when nobody does.
func (b *Bucket) holder(ctx context.Context, key string) (h Holder, ok bool, err error) {
	e, err := b.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Holder{}, false, nil
	}
	if err != nil {
		return Holder{}, false, fmt.Errorf("lease %s: %w", key, err)
	}
	h, err = decodeHolder(key, e.Value())
	return h, err == nil, err
}

func decodeHolder(key string, value []byte) (Holder, error) {
	var h Holder
	if err := json.Unmarshal(value, &h); err != nil {
		return Holder{}, fmt.Errorf("lease %s: holder %q: %w", key, value, err)
	}
	return h, nil
}

// SinkOf returns the sink name of a sink lease key, or false for another
// key.
func SinkOf(key string) (string, bool) { return strings.CutPrefix(key, sinkKeyPrefix) }
