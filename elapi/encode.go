package elapi

import (
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// The wire form of herald's schema (schemas/event.proto), written directly
// so that logging an event makes no intermediate message: the field
// numbers below are the schema's, and a test decodes the output with the
// generated schemas package and compares it with what proto.Marshal makes.
const (
	batchID     = 1
	batchEvents = 2

	eventID        = 1
	eventMask      = 2
	eventSource    = 3
	eventReceived  = 4
	eventClass     = 5
	eventCertainty = 6
	eventHost      = 7
	eventService   = 8
	eventTime      = 9
	eventMessage   = 11
	eventFields    = 12
	eventTrack     = 14

	fieldKey   = 1
	fieldValue = 2

	valueStr   = 1
	valueInt   = 2
	valueFloat = 3
	valueBool  = 4
	valueTime  = 5
	valueBytes = 6
	valueList  = 7
	valueMap   = 8

	listValues = 1
	mapFields  = 1
)

// envelope is what the dispatcher adds to an event when it is logged.
type envelope struct {
	id       string
	mask     uint64
	source   string
	received int64
	class    string
	host     string // used when the event names none
	app      string // used when the event names none
	time     int64  // used when the event has none
	track    string
}

// appendEvent appends the encoded schemas.Event of e with env.
func appendEvent(b []byte, e *Event, env *envelope) []byte {
	b = appendStr(b, eventID, env.id)
	if env.mask != 0 {
		b = protowire.AppendTag(b, eventMask, protowire.VarintType)
		b = protowire.AppendVarint(b, env.mask)
	}
	b = appendStr(b, eventSource, env.source)
	b = appendInt(b, eventReceived, env.received)
	b = appendStr(b, eventClass, env.class)
	b = protowire.AppendTag(b, eventCertainty, protowire.Fixed32Type)
	b = protowire.AppendFixed32(b, math.Float32bits(1))
	host, app, when := e.host, e.app, e.time.UnixNano()
	if host == "" {
		host = env.host
	}
	if app == "" {
		app = env.app
	}
	if e.time.IsZero() {
		when = env.time
	}
	b = appendStr(b, eventHost, host)
	b = appendStr(b, eventService, app)
	b = appendInt(b, eventTime, when)
	b = appendStr(b, eventMessage, e.message)
	for i := range e.fields {
		f := &e.fields[i]
		b = protowire.AppendTag(b, eventFields, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(sizeField(f)))
		b = appendField(b, f)
	}
	b = appendStr(b, eventTrack, env.track)
	return b
}

// appendStr writes a proto3 string field, left out when empty (the
// default), as proto.Marshal does.
func appendStr(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendInt(b []byte, num protowire.Number, i int64) []byte {
	if i == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(i))
}

func sizeField(f *Field) int {
	n := 0
	if f.Key != "" {
		n += protowire.SizeTag(fieldKey) + protowire.SizeBytes(len(f.Key))
	}
	return n + protowire.SizeTag(fieldValue) + protowire.SizeBytes(sizeValue(&f.Value))
}

func appendField(b []byte, f *Field) []byte {
	b = appendStr(b, fieldKey, f.Key)
	b = protowire.AppendTag(b, fieldValue, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(sizeValue(&f.Value)))
	return appendValue(b, &f.Value)
}

// sizeValue is the encoded size of a Value message. A oneof member is
// always written, even when it holds its type's zero.
func sizeValue(v *Value) int {
	switch v.kind {
	case KindString:
		return 1 + protowire.SizeBytes(len(v.str))
	case KindInt, KindTime:
		return 1 + protowire.SizeVarint(v.num)
	case KindFloat:
		return 1 + 8
	case KindBool:
		return 1 + 1
	case KindBytes:
		return 1 + protowire.SizeBytes(len(v.Bytes()))
	case KindList:
		return 1 + protowire.SizeBytes(sizeList(v.List()))
	case KindMap:
		return 1 + protowire.SizeBytes(sizeMap(v.Map()))
	}
	return 0
}

func sizeList(vs []Value) int {
	n := 0
	for i := range vs {
		n += 1 + protowire.SizeBytes(sizeValue(&vs[i]))
	}
	return n
}

func sizeMap(fs []Field) int {
	n := 0
	for i := range fs {
		n += 1 + protowire.SizeBytes(sizeField(&fs[i]))
	}
	return n
}

func appendValue(b []byte, v *Value) []byte {
	switch v.kind {
	case KindString:
		b = protowire.AppendTag(b, valueStr, protowire.BytesType)
		b = protowire.AppendString(b, v.str)
	case KindInt:
		b = protowire.AppendTag(b, valueInt, protowire.VarintType)
		b = protowire.AppendVarint(b, v.num)
	case KindFloat:
		b = protowire.AppendTag(b, valueFloat, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, v.num)
	case KindBool:
		b = protowire.AppendTag(b, valueBool, protowire.VarintType)
		b = protowire.AppendVarint(b, v.num)
	case KindTime:
		b = protowire.AppendTag(b, valueTime, protowire.VarintType)
		b = protowire.AppendVarint(b, v.num)
	case KindBytes:
		b = protowire.AppendTag(b, valueBytes, protowire.BytesType)
		b = protowire.AppendBytes(b, v.Bytes())
	case KindList:
		vs := v.List()
		b = protowire.AppendTag(b, valueList, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(sizeList(vs)))
		for i := range vs {
			b = protowire.AppendTag(b, listValues, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(sizeValue(&vs[i])))
			b = appendValue(b, &vs[i])
		}
	case KindMap:
		fs := v.Map()
		b = protowire.AppendTag(b, valueMap, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(sizeMap(fs)))
		for i := range fs {
			b = protowire.AppendTag(b, mapFields, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(sizeField(&fs[i])))
			b = appendField(b, &fs[i])
		}
	}
	return b
}

// appendBatchHeader starts a schemas.Batch with its id; events follow as
// appendBatchEvent writes them.
func appendBatchHeader(b []byte, id string) []byte { return appendStr(b, batchID, id) }

// appendBatchEvent appends one encoded event to a batch.
func appendBatchEvent(b, ev []byte) []byte {
	b = protowire.AppendTag(b, batchEvents, protowire.BytesType)
	return protowire.AppendBytes(b, ev)
}
