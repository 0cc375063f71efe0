package elapi

import (
	"math"
	"strconv"
	"time"
)

// Kind is the type of a Value.
type Kind uint8

// The kinds of values, as in herald's schema (schemas.Value).
const (
	KindNull Kind = iota
	KindString
	KindInt
	KindFloat
	KindBool
	KindTime
	KindBytes
	KindList
	KindMap
)

var kindNames = [...]string{"null", "string", "int", "float", "bool", "time", "bytes", "list", "map"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Value is one typed value. The zero Value is null. Values are immutable;
// a list or map shares the slice it was made from, which must not change
// afterwards.
type Value struct {
	kind Kind
	num  uint64 // int, float bits, bool, time in Unix nanoseconds
	str  string
	any  any // []byte, []Value or []Field
}

// StringValue returns a text value.
func StringValue(s string) Value { return Value{kind: KindString, str: s} }

// IntValue returns an integer value.
func IntValue(i int64) Value { return Value{kind: KindInt, num: uint64(i)} }

// FloatValue returns a floating-point value.
func FloatValue(f float64) Value { return Value{kind: KindFloat, num: math.Float64bits(f)} }

// BoolValue returns a boolean value.
func BoolValue(b bool) Value {
	v := Value{kind: KindBool}
	if b {
		v.num = 1
	}
	return v
}

// TimeValue returns a time value; herald keeps nanoseconds since the Unix
// epoch, in UTC.
func TimeValue(t time.Time) Value { return Value{kind: KindTime, num: uint64(t.UnixNano())} }

// BytesValue returns a value of raw bytes (any content).
func BytesValue(b []byte) Value { return Value{kind: KindBytes, any: b} }

// ListValue returns an ordered list of values.
func ListValue(vs ...Value) Value { return Value{kind: KindList, any: vs} }

// MapValue returns an ordered map; its keys must be unique.
func MapValue(fs ...Field) Value { return Value{kind: KindMap, any: fs} }

// Kind returns the value's kind.
func (v Value) Kind() Kind { return v.kind }

// Str returns the text of a KindString value, else "".
func (v Value) Str() string { return v.str }

// Int64 returns the integer of a KindInt value, else 0.
func (v Value) Int64() int64 {
	if v.kind != KindInt {
		return 0
	}
	return int64(v.num)
}

// Float64 returns the number of a KindFloat value, else 0.
func (v Value) Float64() float64 {
	if v.kind != KindFloat {
		return 0
	}
	return math.Float64frombits(v.num)
}

// Bool returns the boolean of a KindBool value, else false.
func (v Value) Bool() bool { return v.kind == KindBool && v.num == 1 }

// Time returns the time of a KindTime value, else the zero time.
func (v Value) Time() time.Time {
	if v.kind != KindTime {
		return time.Time{}
	}
	return time.Unix(0, int64(v.num)).UTC()
}

// Bytes returns the bytes of a KindBytes value, else nil.
func (v Value) Bytes() []byte { b, _ := v.any.([]byte); return b }

// List returns the values of a KindList value, else nil.
func (v Value) List() []Value { l, _ := v.any.([]Value); return l }

// Map returns the fields of a KindMap value, else nil.
func (v Value) Map() []Field { m, _ := v.any.([]Field); return m }

// Field is one key-value attribute of an event (or of a map value).
type Field struct {
	Key   string
	Value Value
}

// String returns a text field.
func String(key, value string) Field { return Field{key, StringValue(value)} }

// Int returns an integer field.
func Int(key string, value int64) Field { return Field{key, IntValue(value)} }

// Float returns a floating-point field.
func Float(key string, value float64) Field { return Field{key, FloatValue(value)} }

// Bool returns a boolean field.
func Bool(key string, value bool) Field { return Field{key, BoolValue(value)} }

// Time returns a time field.
func Time(key string, value time.Time) Field { return Field{key, TimeValue(value)} }

// Bytes returns a field of raw bytes.
func Bytes(key string, value []byte) Field { return Field{key, BytesValue(value)} }

// List returns a field holding a list.
func List(key string, values ...Value) Field { return Field{key, ListValue(values...)} }

// Map returns a field holding an ordered map.
func Map(key string, fields ...Field) Field { return Field{key, MapValue(fields...)} }

// Null returns a field without a value.
func Null(key string) Field { return Field{Key: key} }
