package format

import (
	"encoding/base64"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/herald-router/herald/schemas"
)

// Envelope keys written before an event's own fields. A field whose key is
// one of these is written as "_"+key so no key appears twice.
var envelopeKeys = map[string]bool{
	"id": true, "time": true, "received": true, "host": true, "service": true, "class": true,
	"certainty": true, "source": true, "peer": true, "message": true, "raw_b64": true,
}

// AppendJSON appends ev as one JSON object and a newline: the envelope
// (id, time, received, host, service, class, certainty, source, peer,
// message) and then the fields in event order. Empty envelope values are
// left out. When the raw bytes are not valid UTF-8 they are added as
// raw_b64, so nothing received is lost by the text conversion.
func AppendJSON(b []byte, ev *schemas.Event) []byte {
	b = append(b, '{')
	first := true
	key := func(k string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendString(b, k)
		b = append(b, ':')
	}
	str := func(k, v string) {
		if v != "" {
			key(k)
			b = appendString(b, v)
		}
	}
	str("id", ev.Id)
	if ev.TimeUnixNano != 0 {
		key("time")
		b = appendTime(b, ev.TimeUnixNano)
	}
	if ev.ReceivedUnixNano != 0 {
		key("received")
		b = appendTime(b, ev.ReceivedUnixNano)
	}
	str("host", ev.Host)
	str("service", ev.Service)
	str("class", ev.Class)
	if ev.Class != "" {
		key("certainty")
		b = strconv.AppendFloat(b, float64(ev.Certainty), 'g', 3, 32)
	}
	str("source", ev.Source)
	str("peer", ev.Peer)
	key("message")
	b = appendString(b, ev.Message)
	if len(ev.Raw) > 0 && !utf8.Valid(ev.Raw) {
		key("raw_b64")
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, ev.Raw)
		b = append(b, '"')
	}
	for _, f := range ev.Fields {
		k := f.Key
		if envelopeKeys[k] {
			k = "_" + k
		}
		key(k)
		b = appendValue(b, f.Value)
	}
	return append(b, '}', '\n')
}

func appendTime(b []byte, ns int64) []byte {
	b = append(b, '"')
	b = time.Unix(0, ns).UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

func appendValue(b []byte, v *schemas.Value) []byte {
	switch k := v.GetKind().(type) {
	case *schemas.Value_Str:
		return appendString(b, k.Str)
	case *schemas.Value_Int:
		return strconv.AppendInt(b, k.Int, 10)
	case *schemas.Value_Float:
		if math.IsNaN(k.Float) || math.IsInf(k.Float, 0) {
			return appendString(b, strconv.FormatFloat(k.Float, 'g', -1, 64))
		}
		return strconv.AppendFloat(b, k.Float, 'g', -1, 64)
	case *schemas.Value_Bool:
		return strconv.AppendBool(b, k.Bool)
	case *schemas.Value_TimeUnixNano:
		return appendTime(b, k.TimeUnixNano)
	case *schemas.Value_Bytes:
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, k.Bytes)
		return append(b, '"')
	case *schemas.Value_List:
		b = append(b, '[')
		for i, x := range k.List.GetValues() {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendValue(b, x)
		}
		return append(b, ']')
	case *schemas.Value_Map:
		b = append(b, '{')
		for i, f := range k.Map.GetFields() {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, f.Key)
			b = append(b, ':')
			b = appendValue(b, f.Value)
		}
		return append(b, '}')
	}
	return append(b, "null"...)
}

const hex = "0123456789abcdef"

// appendString writes s as a JSON string. Invalid UTF-8 becomes U+FFFD;
// U+2028 and U+2029 are escaped so the line is safe to embed in JavaScript.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
