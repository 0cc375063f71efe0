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
//     opens the next window, and at Close for every window still open.
//     The sink is only called when events come, so a digest waits for the
//     next transaction or for Close.
//   - A digest is confirmed like any message (the barrier) and sent again
//     if its transaction fails. A transaction that fails also undoes its
//     own counting, so redelivered events are not counted twice.
//   - The count is held in memory: a crash of herald (kill -9) before a
//     digest went out loses that digest, never a sent event.
//   - At most max_keys keys are tracked; events of further keys share one
//     window labelled "(other keys)".
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
func (t *throttle) commit() { t.undo, t.inflight = nil, nil }

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

// flush ends every window that folded events, for Close: their digests
// and those still waiting.
func (t *throttle) flush() []digest {
	out := append(t.inflight, t.pending...)
	for k, w := range t.states {
		if w.folded > 0 {
			end := t.now()
			if e := w.start.Add(t.window); e.Before(end) {
				end = e
			}
			out = append(out, w.digest(end))
		}
		delete(t.states, k)
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
