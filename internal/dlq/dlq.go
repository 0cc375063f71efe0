// Package dlq reads and acts on herald's dead-letter stream: a summary by
// stage and reason, one dead letter with its events, redrive (publish the
// events back to where they came from, after a fix) and purge.
package dlq

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/schemas"
)

// Letter is one dead-lettered message.
type Letter struct {
	Seq     uint64
	Time    time.Time
	Stage   string
	Reason  string
	Detail  string
	Origin  string // the subject the message came from
	Data    []byte
	Batch   *schemas.Batch // decoded, when the message is a batch
	Encoded string         // the Herald-Encoding header
}

// Events is the number of events the letter holds (1 for an undecodable one).
func (l *Letter) Events() int {
	if l.Batch != nil {
		return len(l.Batch.Events)
	}
	return 1
}

// DLQ is the dead-letter stream.
type DLQ struct {
	js     jetstream.JetStream
	stream jetstream.Stream
}

// Open finds the dead-letter stream.
func Open(ctx context.Context, js jetstream.JetStream) (*DLQ, error) {
	st, err := js.Stream(ctx, bus.StreamDLQ)
	if err != nil {
		return nil, fmt.Errorf("dead-letter stream %s: %w", bus.StreamDLQ, err)
	}
	return &DLQ{js: js, stream: st}, nil
}

// Get reads the letter at seq.
func (d *DLQ) Get(ctx context.Context, seq uint64) (*Letter, error) {
	m, err := d.stream.GetMsg(ctx, seq)
	if err != nil {
		return nil, fmt.Errorf("dead letter %d: %w", seq, err)
	}
	l := &Letter{Seq: m.Sequence, Time: m.Time, Data: m.Data,
		Stage: m.Header.Get(bus.HeaderDLQStage), Reason: m.Header.Get(bus.HeaderDLQReason),
		Detail: m.Header.Get(bus.HeaderDLQDetail), Origin: m.Header.Get(bus.HeaderDLQSubject),
		Encoded: m.Header.Get(bus.HeaderEncoding)}
	if l.Encoded == bus.EncodingBatch {
		b := &schemas.Batch{}
		if proto.Unmarshal(m.Data, b) == nil {
			l.Batch = b
		}
	}
	return l, nil
}

// Each calls f for every letter, oldest first, until f returns false.
func (d *DLQ) Each(ctx context.Context, f func(*Letter) bool) error {
	info, err := d.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("dead-letter stream: %w", err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		l, err := d.Get(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // purged or redriven
		}
		if err != nil {
			return err
		}
		if !f(l) {
			return nil
		}
	}
	return nil
}

// Group is a summary line: letters of one stage and reason.
type Group struct {
	Stage, Reason  string
	Letters        int
	Events         int
	First, Last    time.Time
	FirstSeq       uint64
	ExampleDetail  string
	ExampleOrigins map[string]int
}

// Summary groups every letter by stage and reason.
func (d *DLQ) Summary(ctx context.Context) ([]*Group, error) {
	groups := map[string]*Group{}
	err := d.Each(ctx, func(l *Letter) bool {
		k := l.Stage + "\x00" + l.Reason
		g := groups[k]
		if g == nil {
			g = &Group{Stage: l.Stage, Reason: l.Reason, First: l.Time, FirstSeq: l.Seq, ExampleDetail: l.Detail,
				ExampleOrigins: map[string]int{}}
			groups[k] = g
		}
		g.Letters++
		g.Events += l.Events()
		g.Last = l.Time
		g.ExampleOrigins[l.Origin]++
		return true
	})
	out := make([]*Group, 0, len(groups))
	for _, g := range groups {
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].FirstSeq < out[j].FirstSeq })
	return out, err
}

// Selector chooses letters; empty fields match anything.
type Selector struct {
	Stage, Reason string
	Seqs          []uint64
}

func (s Selector) match(l *Letter) bool {
	if s.Stage != "" && s.Stage != l.Stage || s.Reason != "" && s.Reason != l.Reason {
		return false
	}
	if len(s.Seqs) == 0 {
		return true
	}
	for _, q := range s.Seqs {
		if q == l.Seq {
			return true
		}
	}
	return false
}

// Redrive publishes the selected letters back to the subject they came
// from (a target's subject, or a stage's input), under an id derived from
// the letter so that redriving twice stores once, then deletes each letter
// from the stream. It returns the letters and events sent back.
func (d *DLQ) Redrive(ctx context.Context, sel Selector) (letters, events int, err error) {
	var todo []*Letter
	if err := d.Each(ctx, func(l *Letter) bool {
		if sel.match(l) {
			todo = append(todo, l)
		}
		return true
	}); err != nil {
		return 0, 0, err
	}
	for _, l := range todo {
		if l.Origin == "" {
			return letters, events, fmt.Errorf("dead letter %d names no origin subject; cannot redrive it", l.Seq)
		}
		m := nats.NewMsg(l.Origin)
		m.Data = l.Data
		m.Header.Set(jetstream.MsgIDHeader, "redrive."+strconv.FormatUint(l.Seq, 10)+"."+strconv.FormatInt(l.Time.UnixNano(), 10))
		if l.Encoded != "" {
			m.Header.Set(bus.HeaderEncoding, l.Encoded)
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := d.js.PublishMsg(pctx, m)
		cancel()
		if err != nil {
			return letters, events, fmt.Errorf("redrive dead letter %d to %s: %w", l.Seq, l.Origin, err)
		}
		if err := d.stream.DeleteMsg(ctx, l.Seq); err != nil {
			return letters, events, fmt.Errorf("redriven dead letter %d could not be deleted (it would be redriven again): %w", l.Seq, err)
		}
		letters++
		events += l.Events()
	}
	return letters, events, nil
}

// Purge deletes the selected letters for good.
func (d *DLQ) Purge(ctx context.Context, sel Selector) (int, error) {
	n := 0
	var seqs []uint64
	if err := d.Each(ctx, func(l *Letter) bool {
		if sel.match(l) {
			seqs = append(seqs, l.Seq)
		}
		return true
	}); err != nil {
		return 0, err
	}
	for _, q := range seqs {
		if err := d.stream.DeleteMsg(ctx, q); err != nil {
			return n, fmt.Errorf("purge dead letter %d: %w", q, err)
		}
		n++
	}
	return n, nil
}
