package resolver

import (
	"bytes"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/herald-router/herald/actors/stage"
	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/internal/ids"
)

// Field numbers of the wire form (schemas/event.proto) the fast path reads.
const (
	batchID      = 1
	batchEvents  = 2
	eventID      = 1
	eventRecv    = 4
	eventTimeNum = 9
	eventFields  = 12
	fieldKeyNum  = 1
	fieldValue   = 2
	valueInt     = 2
)

// ProcessWire implements stage.WireProcessor. For most events resolving
// only adds an id and R_time__, and appending fields to an encoded message
// is how protobuf defines merging, so each event's bytes are copied with
// the additions appended: the result decodes to exactly what Resolve
// makes, without decoding or re-encoding the event. It declines (and
// Process does the work) when a default template is configured, when an
// event not yet resolved has a field whose key starts with "R_" (other
// than R_time__) or "__" (a resolvable, reserved or template key), and for
// anything it cannot read, which Process reports.
func (p Processor) ProcessWire(data []byte) (string, []stage.Output, bool) {
	if p.cfg().fallback != nil {
		return "", nil, false
	}
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

// resolveWire returns ev's bytes with what Resolve would add appended, or
// false when Resolve would do more.
func resolveWire(ev []byte, batch string, index int) ([]byte, bool) {
	var hasID, timeSeen, resolved, other bool
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
		case num == eventTimeNum && typ == protowire.VarintType:
			x, _ := protowire.ConsumeVarint(v)
			evTime = int64(x)
		case num == eventFields && typ == protowire.BytesType && !timeSeen:
			f, _ := protowire.ConsumeBytes(v)
			key, value := readField(f)
			switch {
			case string(key) == FieldTime:
				kind, ok := valueKind(value)
				isInt := ok && kind == valueInt
				// Only the first R_time__ counts, as in Resolve: an integer
				// marks a resolved event, a null or text one is filled in by
				// the full path.
				timeSeen, resolved = true, isInt
				other = other || !isInt
			case bytes.HasPrefix(key, prefixResolvable) || bytes.HasPrefix(key, prefixReserved):
				other = true
			}
		}
	}
	if other && !resolved {
		return nil, false
	}
	out := make([]byte, len(ev), len(ev)+72)
	copy(out, ev)
	if !hasID {
		out = protowire.AppendTag(out, eventID, protowire.BytesType)
		out = protowire.AppendString(out, ids.Derived(time.Unix(0, received), batch, index))
	}
	if !resolved {
		t := evTime
		if t == 0 {
			t = received
		}
		secs := uint64(t / int64(time.Second))
		valLen := 1 + protowire.SizeVarint(secs)
		fieldLen := 1 + protowire.SizeBytes(len(FieldTime)) + 1 + protowire.SizeBytes(valLen)
		out = protowire.AppendTag(out, eventFields, protowire.BytesType)
		out = protowire.AppendVarint(out, uint64(fieldLen))
		out = protowire.AppendTag(out, fieldKeyNum, protowire.BytesType)
		out = protowire.AppendString(out, FieldTime)
		out = protowire.AppendTag(out, fieldValue, protowire.BytesType)
		out = protowire.AppendVarint(out, uint64(valLen))
		out = protowire.AppendTag(out, valueInt, protowire.VarintType)
		out = protowire.AppendVarint(out, secs)
	}
	return out, true
}

// Key prefixes that need the full path.
var prefixResolvable, prefixReserved = []byte("R_"), []byte("__")

// readField returns the key and the value of an encoded Field. Repeated
// parts merge as protobuf decoding merges them: the last key wins, and
// the value is every value part in order (valueKind reads it as one).
func readField(f []byte) (key, value []byte) {
	for len(f) > 0 {
		num, typ, n := protowire.ConsumeTag(f)
		if n < 0 {
			return key, value
		}
		f = f[n:]
		m := protowire.ConsumeFieldValue(num, typ, f)
		if m < 0 {
			return key, value
		}
		switch {
		case num == fieldKeyNum && typ == protowire.BytesType:
			key, _ = protowire.ConsumeBytes(f)
		case num == fieldValue && typ == protowire.BytesType:
			v, _ := protowire.ConsumeBytes(f)
			if value == nil {
				value = v
			} else { // rare: a split value; join the parts
				value = append(append([]byte(nil), value...), v...)
			}
		}
		f = f[m:]
	}
	return key, value
}

// valueWireTypes are the wire types of Value's oneof members by field
// number; a member with another wire type is an unknown field.
var valueWireTypes = [...]protowire.Type{1: protowire.BytesType, 2: protowire.VarintType,
	3: protowire.Fixed64Type, 4: protowire.VarintType, 5: protowire.VarintType,
	6: protowire.BytesType, 7: protowire.BytesType, 8: protowire.BytesType}

// valueKind returns the field number of the last oneof member set in an
// encoded Value, if any.
func valueKind(v []byte) (protowire.Number, bool) {
	var kind protowire.Number
	var set bool
	for len(v) > 0 {
		num, typ, n := protowire.ConsumeTag(v)
		if n < 0 {
			return 0, false
		}
		v = v[n:]
		m := protowire.ConsumeFieldValue(num, typ, v)
		if m < 0 {
			return 0, false
		}
		if num >= 1 && num < protowire.Number(len(valueWireTypes)) && typ == valueWireTypes[num] {
			kind, set = num, true
		}
		v = v[m:]
	}
	return kind, set
}

var _ stage.WireProcessor = Processor{}
