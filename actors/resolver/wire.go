package resolver

import (
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/herald-router/herald/actors/stage"
	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/internal/ids"
)

// Field numbers of the wire form (schemas/event.proto) the fast path reads.
const (
	batchID     = 1
	batchEvents = 2
	eventID     = 1
	eventRecv   = 4
	eventTime   = 9
	eventFields = 12
	fieldKey    = 1
	fieldValue  = 2
	valueInt    = 2
)

// ProcessWire implements stage.WireProcessor. Resolving only adds an id
// and R_time__, and appending fields to an encoded message is how protobuf
// defines merging, so each event's bytes are copied with the additions
// appended: the result decodes to exactly what Resolve makes, without
// decoding or re-encoding the event. Anything it cannot read goes to
// Process, which reports it.
func (Processor) ProcessWire(data []byte) (string, []stage.Output, bool) {
	var id string
	var events [][]byte
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return "", nil, false
		}
		data = data[n:]
		switch {
		case num == batchID && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(data)
			if m < 0 {
				return "", nil, false
			}
			id, data = string(v), data[m:]
		case num == batchEvents && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(data)
			if m < 0 {
				return "", nil, false
			}
			events, data = append(events, v), data[m:]
		default:
			m := protowire.ConsumeFieldValue(num, typ, data)
			if m < 0 {
				return "", nil, false
			}
			data = data[m:]
		}
	}
	out := make([][]byte, len(events))
	for i, ev := range events {
		r, ok := resolveWire(ev, id, i)
		if !ok {
			return "", nil, false
		}
		out[i] = r
	}
	return id, []stage.Output{{Key: "resolved", Subject: bus.SubjectResolved, Encoded: out}}, true
}

// resolveWire returns ev's bytes with what Resolve would add appended.
func resolveWire(ev []byte, batch string, index int) ([]byte, bool) {
	var hasID, hasTime bool
	var received, evTime int64
	for b := ev; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, false
		}
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return nil, false
		}
		v := b[:m]
		b = b[m:]
		switch {
		case num == eventID && typ == protowire.BytesType:
			s, _ := protowire.ConsumeBytes(v)
			hasID = len(s) > 0
		case num == eventRecv && typ == protowire.VarintType:
			x, _ := protowire.ConsumeVarint(v)
			received = int64(x)
		case num == eventTime && typ == protowire.VarintType:
			x, _ := protowire.ConsumeVarint(v)
			evTime = int64(x)
		case num == eventFields && typ == protowire.BytesType && !hasTime:
			f, _ := protowire.ConsumeBytes(v)
			hasTime = fieldKeyIs(f, FieldTime)
		}
	}
	out := make([]byte, len(ev), len(ev)+72)
	copy(out, ev)
	if !hasID {
		out = protowire.AppendTag(out, eventID, protowire.BytesType)
		out = protowire.AppendString(out, ids.Derived(time.Unix(0, received), batch, index))
	}
	if !hasTime {
		t := evTime
		if t == 0 {
			t = received
		}
		secs := uint64(t / int64(time.Second))
		valLen := 1 + protowire.SizeVarint(secs)
		fieldLen := 1 + protowire.SizeBytes(len(FieldTime)) + 1 + protowire.SizeBytes(valLen)
		out = protowire.AppendTag(out, eventFields, protowire.BytesType)
		out = protowire.AppendVarint(out, uint64(fieldLen))
		out = protowire.AppendTag(out, fieldKey, protowire.BytesType)
		out = protowire.AppendString(out, FieldTime)
		out = protowire.AppendTag(out, fieldValue, protowire.BytesType)
		out = protowire.AppendVarint(out, uint64(valLen))
		out = protowire.AppendTag(out, valueInt, protowire.VarintType)
		out = protowire.AppendVarint(out, secs)
	}
	return out, true
}

// fieldKeyIs reports whether an encoded Field has the given key.
func fieldKeyIs(f []byte, key string) bool {
	for len(f) > 0 {
		num, typ, n := protowire.ConsumeTag(f)
		if n < 0 {
			return false
		}
		f = f[n:]
		if num == fieldKey && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(f)
			return string(v) == key
		}
		m := protowire.ConsumeFieldValue(num, typ, f)
		if m < 0 {
			return false
		}
		f = f[m:]
	}
	return false
}

var _ stage.WireProcessor = Processor{}
