package xmpp

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/herald-router/herald/schemas"
)

// Throttle with digest. Semantics, exactly:
//
//   - Each key (the values of throttle.key in the event, e.g. its host)
//     has a fixed window of throttle.window that opens at the first event
//     of that key the sink handles and is measured on herald's clock when
//     the sink handles the event (not the event's own time).
//   - Within a window the first throttle.events events of the key are sent
//     as usual. Each later one is folded: not sent, but counted, with the
//     first and the last folded event remembered (id and body). A folded
//     event is committed with its transaction like a sent one.
//   - When a window that folded events has closed, one digest message goes
//     to every push recipient: "N more like this from host=X between
//     T1 and T2 (throttle: E per W): first: …; last: …". It is sent at the
//     first transaction after the window closed (before that
//     transaction's events), or earlier when an event of the same key
//     opens the next window, and at Close for every window still open
//     (its folded count starts again at zero; the window goes on). The sink
//     is only called when events come, so a digest waits for the next
//     transaction or for Close.
//   - A digest is confirmed like any message (the barrier) and sent again
//     if its transaction fails. A transaction that fails also undoes its
//     own counting, so redelivered events are not counted twice.
//   - At most max_keys keys are tracked; events of further keys share one
//     window labelled "(other keys)".
//
// Where the windows live. With herald's bus (the sink built by the
// registry) the windows are kept in the JetStream key-value bucket
// bus.KVThrottle, one key per sink and throttle key (windows.go), so the
// process that takes the sink's lease over after a crash continues them:
// it sends no more than throttle.events per window in all, and the digest
// counts the events folded by both.
//
//   - The windows are read from the bucket before the first transaction,
//     and again after Reopen (the lease acquired again: another process may
//     have moved them on meanwhile).
//   - When a transaction commits, after the barrier, every window it
//     touched is written: one put per touched key, whatever the number of
//     its events, the puts of a transaction in flight together (at most
//     32 at once); a window that ended is deleted, so a digest's window
//     goes once the digest is confirmed. A failed transaction writes
//     nothing: the bucket keeps the windows as they were before it, which
//     is what its undo restores in memory. The cost is the writes' round
//     trips, overlapped: about 20 µs per touched key against the embedded
//     server on two cores (BenchmarkWindowWrites), next to the ping
//     barrier's round trip to the XMPP server; and under 1 KiB stored per
//     key (the folded bodies are cut to 256 bytes).
//   - A write that fails is logged and tried again at the next commit; the
//     transaction still commits, since its messages were confirmed.
//   - Writes are compare-and-set on the revision this process last read or
//     wrote, so a process that lost the lease without dying overwrites
//     nothing its successor wrote: it learns so at its next write, and
//     reads the windows again before its next transaction (a digest may
//     then come twice; none is lost).
//   - At Close, once the digests are confirmed, the windows still open are
//     written with their count at zero (a next holder goes on without
//     sending the digest again); digests not confirmed at Close stay in
//     the bucket and the next holder sends them.
//   - A crash between the barrier and the write (or a failed write) lets
//     the next holder see the windows as before that transaction, which is
//     redelivered to it anyway: a digest may come twice, or a few events be
//     counted again. A window not written for 7 days is dropped.
//
// Without the bus (tests, NATS nil) the windows are held in memory only:
// a crash of herald (kill -9) before a digest went out loses that digest,
// never a sent event, and a restart starts fresh windows.
//
// Only push messages are throttled. PubSub items are for programs, which
// want every event; a node's subscribers get them all.

type folded struct{ id, body string }

type window struct {
	key, label   string
	start        time.Time
	sent, folded int
	first, last  folded
	firstSet     bool
}

// digest is one window's summary.
type digest struct {
	label       string
	count       int
	first, last folded
	start, end  time.Time
	made        bool // by the current transaction, from a window it closed
}

type throttle struct {
	limit   int
	window  time.Duration
	keys    []string
	maxKeys int
	now     func() time.Time

	states     map[string]*window
	nextExpiry time.Time // no window closes before; zero: scan

	undo     map[string]*window // the transaction's first view of each key it touched; nil: absent
	pending  []digest           // waiting to be sent
	inflight []digest           // handed to the current transaction

	// dirty holds the keys committed but not yet written to the bucket;
	// nil when the windows are only in memory.
	dirty map[string]bool
}

func newThrottle(o ThrottleOptions) *throttle {
	if o.Events <= 0 {
		return nil
	}
	return &throttle{
		limit: o.Events, window: time.Duration(o.Window), keys: o.Key, maxKeys: o.MaxKeys,
		now: time.Now, states: map[string]*window{},
	}
}

const otherKeys = "\x00other"

// keyOf is the throttle key of ev and its label.
func (t *throttle) keyOf(ev *schemas.Event) (string, string) {
	var k, l strings.Builder
	for i, name := range t.keys {
		v := ""
		if envelopeNames[name] {
			v = envelopeText(ev, name)
		} else {
			for _, f := range ev.Fields {
				if f.Key == name {
					v = valueText(f.Value)
					break
				}
			}
		}
		if i > 0 {
			k.WriteByte(0)
			l.WriteByte(' ')
		}
		k.WriteString(v)
		l.WriteString(name + "=" + v)
	}
	return k.String(), l.String()
}

func (t *throttle) touch(k string) {
	if _, seen := t.undo[k]; seen {
		return
	}
	if w := t.states[k]; w != nil {
		c := *w
		t.undo[k] = &c
	} else {
		t.undo[k] = nil
	}
}

// begin starts a transaction and returns the digests it must send first:
// those a failed transaction did not get confirmed, and those of windows
// that have closed.
func (t *throttle) begin() []digest {
	t.undo = map[string]*window{}
	t.inflight, t.pending = append(t.inflight, t.pending...), nil
	now := t.now()
	if t.nextExpiry.IsZero() || !now.Before(t.nextExpiry) {
		t.nextExpiry = time.Time{}
		for k, w := range t.states {
			end := w.start.Add(t.window)
			if !now.Before(end) {
				t.touch(k)
				delete(t.states, k)
				if w.folded > 0 {
					d := w.digest(end)
					d.made = true
					t.inflight = append(t.inflight, d)
				}
				continue
			}
			if t.nextExpiry.IsZero() || end.Before(t.nextExpiry) {
				t.nextExpiry = end
			}
		}
	}
	return append([]digest(nil), t.inflight...)
}

// admit says whether ev (whose body is body) is sent, and returns the
// digest of its key's previous window when ev closes it.
func (t *throttle) admit(ev *schemas.Event, body string) (bool, *digest) {
	k, label := t.keyOf(ev)
	now := t.now()
	if _, ok := t.states[k]; !ok && len(t.states) >= t.maxKeys {
		k, label = otherKeys, "(other keys)"
	}
	t.touch(k)
	var dg *digest
	w := t.states[k]
	if w != nil && !now.Before(w.start.Add(t.window)) {
		if w.folded > 0 {
			d := w.digest(w.start.Add(t.window))
			d.made = true
			dg = &d
			t.inflight = append(t.inflight, d)
		}
		w = nil
	}
	if w == nil {
		w = &window{key: k, label: label, start: now}
		t.states[k] = w
		if end := now.Add(t.window); t.nextExpiry.IsZero() || end.Before(t.nextExpiry) {
			t.nextExpiry = end
		}
	}
	if w.sent < t.limit {
		w.sent++
		return true, dg
	}
	w.folded++
	f := folded{id: ev.Id, body: cut(body, 256)}
	if !w.firstSet {
		w.first, w.firstSet = f, true
	}
	w.last = f
	return false, dg
}

// commit: the transaction's messages, digests included, are confirmed.
func (t *throttle) commit() {
	if t.dirty != nil {
		for k := range t.undo {
			t.dirty[k] = true
		}
	}
	t.undo, t.inflight = nil, nil
}

// persist makes the throttle track what to write to the bucket.
func (t *throttle) persist() {
	if t.dirty == nil {
		t.dirty = map[string]bool{}
	}
}

// unsaved returns what the bucket lacks: a copy of each dirty key's
// window, nil for a key whose window ended.
func (t *throttle) unsaved() map[string]*window {
	if len(t.dirty) == 0 {
		return nil
	}
	out := make(map[string]*window, len(t.dirty))
	for k := range t.dirty {
		if w := t.states[k]; w != nil {
			c := *w
			out[k] = &c
		} else {
			out[k] = nil
		}
	}
	return out
}

// saved marks keys as written; a key changed since stays dirty.
func (t *throttle) saved(written map[string]*window, keys []string) {
	for _, k := range keys {
		w, now := written[k], t.states[k]
		if w == nil && now == nil || w != nil && now != nil && *w == *now {
			delete(t.dirty, k)
		}
	}
}

// restore replaces the windows with those read from the bucket; what was
// not written yet is dropped, the bucket being the truth.
func (t *throttle) restore(ws map[string]*window) {
	if ws == nil {
		ws = map[string]*window{}
	}
	t.states = ws
	t.undo, t.pending, t.inflight, t.nextExpiry = nil, nil, nil, time.Time{}
	if t.dirty != nil {
		t.dirty = map[string]bool{}
	}
}

// rollback undoes the failed transaction's counting; the digests it
// inherited wait for the next one, and those of windows it closed are in
// the restored windows again.
func (t *throttle) rollback() {
	for k, old := range t.undo {
		if old == nil {
			delete(t.states, k)
		} else {
			t.states[k] = old
		}
	}
	var keep []digest
	for _, d := range t.inflight {
		if !d.made {
			keep = append(keep, d)
		}
	}
	t.pending = append(keep, t.pending...)
	t.undo, t.inflight, t.nextExpiry = nil, nil, time.Time{}
}

// flush ends the folding of every window, for Close: it returns their
// digests and those still waiting. A window still open goes on with its
// sent count and no folded events; one that ended is removed.
func (t *throttle) flush() []digest {
	out := append(t.inflight, t.pending...)
	now := t.now()
	for k, w := range t.states {
		if w.folded == 0 {
			continue
		}
		end := w.start.Add(t.window)
		if end.After(now) {
			out = append(out, w.digest(now))
			t.states[k] = &window{key: w.key, label: w.label, start: w.start, sent: w.sent}
		} else {
			out = append(out, w.digest(end))
			delete(t.states, k)
		}
		if t.dirty != nil {
			t.dirty[k] = true
		}
	}
	t.inflight, t.pending = nil, nil
	return out
}

func (w *window) digest(end time.Time) digest {
	return digest{label: w.label, count: w.folded, first: w.first, last: w.last, start: w.start, end: end}
}

// text is the digest's message body.
func (d digest) text(limit int, window time.Duration) string {
	s := fmt.Sprintf("%d more like this from %s between %s and %s (throttle: %d per %s): first: %s",
		d.count, d.label, d.start.UTC().Format(time.RFC3339), d.end.UTC().Format(time.RFC3339), limit, window, d.first.body)
	if d.count > 1 {
		s += "; last: " + d.last.body
	}
	return s
}

// cut shortens s to at most n bytes on a character boundary, marking the
// cut with an ellipsis.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
