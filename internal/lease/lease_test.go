package lease_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/bus/bustest"
	"github.com/herald-router/herald/internal/lease"
)

const ttl = lease.MinTTL

// process is one simulated herald process: its own NATS connection and
// identity on the shared server.
type process struct {
	name string
	nc   *nats.Conn
	b    *lease.Bucket
}

func newProcess(t *testing.T, srv *bus.Bus, name string) *process {
	t.Helper()
	nc, err := nats.Connect("", nats.InProcessServer(srv.Server), nats.Name(name))
	if err != nil {
		t.Fatalf("connect %s: %v", name, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	self := lease.Self()
	self.Host = name
	b, err := lease.Open(t.Context(), js, lease.Options{TTL: ttl, Self: self})
	if err != nil {
		t.Fatalf("open lease bucket as %s: %v", name, err)
	}
	return &process{name: name, nc: nc, b: b}
}

func TestOnlyOneProcessHoldsALease(t *testing.T) {
	srv := bustest.Open(t)
	a, b := newProcess(t, srv, "a"), newProcess(t, srv, "b")
	if _, err := a.b.Acquire(t.Context(), "sink.events"); err != nil {
		t.Fatalf("a acquires a free lease: %v", err)
	}
	_, err := b.b.Acquire(t.Context(), "sink.events")
	var he *lease.HeldError
	if !errors.Is(err, lease.ErrHeld) || !errors.As(err, &he) {
		t.Fatalf("b acquires a lease a holds: got %v, want ErrHeld", err)
	}
	if he.By.Instance != a.b.Self().Instance || he.By.Host != "a" {
		t.Fatalf("the held error names %+v, want a (%+v)", he.By, a.b.Self())
	}
	if _, err := a.b.Acquire(t.Context(), "sink.other"); err != nil {
		t.Fatalf("another key is free: %v", err)
	}
	holders, err := lease.Holders(t.Context(), srv.JS)
	if err != nil {
		t.Fatal(err)
	}
	if len(holders) != 2 || holders["sink.events"].Host != "a" {
		t.Fatalf("holders: %+v, want sink.events and sink.other held by a", holders)
	}
}

func TestAHolderThatStopsRenewingLosesTheLeaseWithinTheTTLAndCannotRenewIt(t *testing.T) {
	srv := bustest.Open(t)
	a, b := newProcess(t, srv, "a"), newProcess(t, srv, "b")
	la, err := a.b.Acquire(t.Context(), "sink.events")
	if err != nil {
		t.Fatal(err)
	}
	if err := la.Renew(t.Context()); err != nil {
		t.Fatalf("a renews the lease it holds: %v", err)
	}
	stopped := time.Now() // a renews no more from here
	var lb *lease.Lease
	bustest.Eventually(t, ttl+2*time.Second, 20*time.Millisecond, func() error {
		lb, err = b.b.Acquire(t.Context(), "sink.events")
		return err
	})
	took := time.Since(stopped)
	t.Logf("b acquired %s after a stopped renewing (ttl %s)", took.Round(time.Millisecond), ttl)
	if took < ttl-100*time.Millisecond {
		t.Fatalf("b acquired after %s, before the TTL %s ran out", took, ttl)
	}
	if err := la.Renew(t.Context()); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("a renews after expiry and takeover: got %v, want ErrLost", err)
	}
	if err := la.Release(t.Context()); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("a releases a lease it lost: got %v, want ErrLost", err)
	}
	if err := lb.Renew(t.Context()); err != nil {
		t.Fatalf("b still holds the lease after a's stale renewal and release: %v", err)
	}
}

func TestAStaleHolderCannotRenewAnExpiredLeaseNobodyTook(t *testing.T) {
	srv := bustest.Open(t)
	a := newProcess(t, srv, "a")
	la, err := a.b.Acquire(t.Context(), "sink.events")
	if err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, ttl+2*time.Second, 20*time.Millisecond, func() error {
		h, err := lease.Holders(t.Context(), srv.JS)
		if err != nil {
			return err
		}
		if len(h) > 0 {
			return fmt.Errorf("still held: %+v", h)
		}
		return nil
	})
	if err := la.Renew(t.Context()); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("renewal of an expired lease: got %v, want ErrLost", err)
	}
}

func TestReleaseHandsTheLeaseOverAtOnce(t *testing.T) {
	srv := bustest.Open(t)
	a, b := newProcess(t, srv, "a"), newProcess(t, srv, "b")
	la, err := a.b.Acquire(t.Context(), "sink.events")
	if err != nil {
		t.Fatal(err)
	}
	if err := la.Release(t.Context()); err != nil {
		t.Fatalf("release: %v", err)
	}
	if _, err := b.b.Acquire(t.Context(), "sink.events"); err != nil {
		t.Fatalf("b acquires right after a released: %v", err)
	}
	if err := la.Renew(t.Context()); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("a renews what it released: got %v, want ErrLost", err)
	}
}

func TestATTLBelowTheMinimumIsRefused(t *testing.T) {
	srv := bustest.Open(t)
	if _, err := lease.Open(t.Context(), srv.JS, lease.Options{TTL: 100 * time.Millisecond}); err == nil {
		t.Fatal("a 100ms TTL was accepted")
	}
}

// workLog records when each keeper's work ran, to check that two never ran
// at once.
type workLog struct {
	mu      sync.Mutex
	running map[string]bool
	overlap []string
	starts  map[string]chan time.Time
	stops   map[string]chan time.Time
	held    map[string]float64
}

func newWorkLog(names ...string) *workLog {
	w := &workLog{running: map[string]bool{}, starts: map[string]chan time.Time{},
		stops: map[string]chan time.Time{}, held: map[string]float64{}}
	for _, n := range names {
		w.starts[n] = make(chan time.Time, 10)
		w.stops[n] = make(chan time.Time, 10)
	}
	return w
}

func (w *workLog) config(name string, keys ...string) lease.KeepConfig {
	return lease.KeepConfig{
		Keys: keys,
		Start: func() (func(context.Context), error) {
			w.mu.Lock()
			for other, r := range w.running {
				if r && other != name {
					w.overlap = append(w.overlap, fmt.Sprintf("%s started while %s ran", name, other))
				}
			}
			w.running[name] = true
			w.mu.Unlock()
			w.starts[name] <- time.Now()
			return func(context.Context) {
				w.mu.Lock()
				w.running[name] = false
				w.mu.Unlock()
				w.stops[name] <- time.Now()
			}, nil
		},
		Held: func(key string, d float64) {
			w.mu.Lock()
			w.held[name+"/"+key] += d
			w.mu.Unlock()
		},
		Poll: 50 * time.Millisecond,
	}
}

func (w *workLog) check(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.overlap) > 0 {
		t.Fatalf("two keepers ran at once: %v", w.overlap)
	}
}

func recv(t *testing.T, c chan time.Time, within time.Duration, what string) time.Time {
	t.Helper()
	select {
	case at := <-c:
		return at
	case <-time.After(within):
		t.Fatalf("%s did not happen within %s", what, within)
		return time.Time{}
	}
}

func TestAKeeperWhoseHolderVanishesTakesOverWithoutOverlap(t *testing.T) {
	srv := bustest.Open(t)
	a, b := newProcess(t, srv, "a"), newProcess(t, srv, "b")
	w := newWorkLog("a", "b")
	ka := a.b.Keep(w.config("a", "sink.events"))
	recv(t, w.starts["a"], 5*time.Second, "a's work starting")
	kb := b.b.Keep(w.config("b", "sink.events"))
	t.Cleanup(func() { ka.Close(context.Background()); kb.Close(context.Background()) })
	// Several renewal periods: b must keep waiting.
	select {
	case <-w.starts["b"]:
		t.Fatal("b started while a held the lease")
	case <-time.After(2 * ttl):
	}
	if !ka.Holding() || kb.Holding() {
		t.Fatalf("holding: a %v, b %v; want a only", ka.Holding(), kb.Holding())
	}
	// a loses NATS: it cannot renew, so it must stop its work on its own
	// before its key expires and b starts.
	cut := time.Now()
	a.nc.Close()
	stoppedA := recv(t, w.stops["a"], 2*ttl, "a stopping after losing NATS")
	startedB := recv(t, w.starts["b"], 2*ttl+2*time.Second, "b taking over")
	t.Logf("a stopped %s and b started %s after a lost NATS (ttl %s)",
		stoppedA.Sub(cut).Round(time.Millisecond), startedB.Sub(cut).Round(time.Millisecond), ttl)
	if !stoppedA.Before(startedB) {
		t.Fatalf("b started at %s, before a stopped at %s", startedB, stoppedA)
	}
	w.check(t)
}

func TestClosingAKeeperHandsOverAtOnce(t *testing.T) {
	srv := bustest.Open(t)
	a, b := newProcess(t, srv, "a"), newProcess(t, srv, "b")
	w := newWorkLog("a", "b")
	ka := a.b.Keep(w.config("a", "sink.events", "sink.audit"))
	recv(t, w.starts["a"], 5*time.Second, "a's work starting")
	kb := b.b.Keep(w.config("b", "sink.audit", "sink.events"))
	t.Cleanup(func() { kb.Close(context.Background()) })
	closed := time.Now()
	ka.Close(context.Background())
	started := recv(t, w.starts["b"], ttl/2, "b taking over after a released")
	t.Logf("b started %s after a closed", started.Sub(closed).Round(time.Millisecond))
	w.check(t)
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range []string{"a/sink.events", "a/sink.audit"} {
		if w.held[k] != 0 {
			t.Errorf("held gauge %s = %v after a closed, want 0", k, w.held[k])
		}
	}
	for _, k := range []string{"b/sink.events", "b/sink.audit"} {
		if w.held[k] != 1 {
			t.Errorf("held gauge %s = %v, want 1", k, w.held[k])
		}
	}
}

func TestAKeeperTakesAllItsKeysOrNoneSoItBlocksNobody(t *testing.T) {
	srv := bustest.Open(t)
	a, b, c := newProcess(t, srv, "a"), newProcess(t, srv, "b"), newProcess(t, srv, "c")
	w := newWorkLog("a", "b", "c")
	ka := a.b.Keep(w.config("a", "sink.y"))
	t.Cleanup(func() { ka.Close(context.Background()) })
	recv(t, w.starts["a"], 5*time.Second, "a's work starting")
	kb := b.b.Keep(w.config("b", "sink.x", "sink.y"))
	t.Cleanup(func() { kb.Close(context.Background()) })
	// b tries x then y again and again; if it sat on x while y is a's,
	// c, which only wants x, would wait for ever.
	kc := c.b.Keep(w.config("c", "sink.x"))
	t.Cleanup(func() { kc.Close(context.Background()) })
	recv(t, w.starts["c"], 3*time.Second, "c acquiring sink.x while b waits for sink.y")
	select {
	case <-w.starts["b"]:
		t.Fatal("b started without holding both keys")
	default:
	}
}

func TestANewerKeeperOfTheSameProcessTakesOverWithoutWaiting(t *testing.T) {
	srv := bustest.Open(t)
	a := newProcess(t, srv, "a")
	w := newWorkLog("old", "new")
	old := a.b.Keep(w.config("old", "sink.events"))
	t.Cleanup(func() { old.Close(context.Background()) })
	recv(t, w.starts["old"], 5*time.Second, "the old keeper's work starting")
	nw := a.b.Keep(w.config("new", "sink.events"))
	t.Cleanup(func() { nw.Close(context.Background()) })
	recv(t, w.starts["new"], ttl/2, "the new keeper taking over (a reload)")
	recv(t, w.stops["old"], 2*ttl, "the old keeper stopping once superseded")
	// The old keeper must not take the lease back.
	select {
	case <-w.starts["old"]:
		t.Fatal("the old keeper took the lease back")
	case <-time.After(ttl):
	}
	if !nw.Holding() {
		t.Fatal("the new keeper does not hold the lease")
	}
}
