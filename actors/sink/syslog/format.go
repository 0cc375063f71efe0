package syslog

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/herald-router/herald/schemas"
)

// Field keys the formatter takes from an event when they are present: the
// classifier stores a received syslog line's parts under the same keys, so
// an event that came in as syslog goes out with its own PRI, PROCID, MSGID
// and structured data.
const (
	keyFacility = "facility" // int 0..23
	keySeverity = "severity" // int 0..7
	keyPID      = "pid"      // string or int
	keyMsgID    = "msgid"    // string
	keySD       = "sd"       // map of SD-ID → map of PARAM-NAME → value
)

// Header field limits of RFC 5424 section 6 (in bytes of PRINTUSASCII).
const (
	maxHostname = 255
	maxAppName  = 48
	maxProcID   = 128
	maxMsgID    = 32
	maxSDName   = 32
)

// Formatter turns events into syslog lines (without framing). Its zero
// value is not useful: use the fields' documented defaults.
type Formatter struct {
	// RFC3164 selects the BSD format (RFC 3164); otherwise RFC 5424.
	RFC3164 bool
	// Facility and Severity make the PRI of an event without integer
	// fields "facility" / "severity" (or with values out of range).
	Facility, Severity int
	// IDElement is the SD-ID of the element that carries the event id in
	// RFC 5424 output (`[herald@32473 id="..."]`); empty leaves it out.
	IDElement string
	// Hostname stands in for an event without a host. RFC 5424 then uses
	// its NILVALUE "-" when this is empty too.
	Hostname string
	// Location is the time zone of RFC 3164 timestamps, which carry no
	// zone of their own; nil means time.Local. RFC 5424 is always UTC.
	Location *time.Location
}

// Append appends ev's syslog line to b.
func (f *Formatter) Append(b []byte, ev *schemas.Event) []byte {
	if f.RFC3164 {
		return f.append3164(b, ev)
	}
	return f.append5424(b, ev)
}

// pri returns the event's PRI value.
func (f *Formatter) pri(ev *schemas.Event) int {
	fac, sev := f.Facility, f.Severity
	for _, fl := range ev.Fields {
		switch fl.Key {
		case keyFacility:
			if v, ok := fl.Value.GetKind().(*schemas.Value_Int); ok && v.Int >= 0 && v.Int <= 23 {
				fac = int(v.Int)
			}
		case keySeverity:
			if v, ok := fl.Value.GetKind().(*schemas.Value_Int); ok && v.Int >= 0 && v.Int <= 7 {
				sev = int(v.Int)
			}
		}
	}
	return fac*8 + sev
}

// eventTime is when the event happened, or when herald received it; zero
// when neither is known.
func eventTime(ev *schemas.Event) int64 {
	if ev.TimeUnixNano != 0 {
		return ev.TimeUnixNano
	}
	return ev.ReceivedUnixNano
}

func field(ev *schemas.Event, key string) *schemas.Value {
	for _, fl := range ev.Fields {
		if fl.Key == key {
			return fl.Value
		}
	}
	return nil
}

// scalar renders a scalar value as text for a header field or an SD
// parameter; ok is false for lists, maps and absent values, which have no
// place in a syslog line.
func scalar(b []byte, v *schemas.Value) ([]byte, bool) {
	switch k := v.GetKind().(type) {
	case *schemas.Value_Str:
		return append(b, k.Str...), true
	case *schemas.Value_Int:
		return strconv.AppendInt(b, k.Int, 10), true
	case *schemas.Value_Float:
		return strconv.AppendFloat(b, k.Float, 'g', -1, 64), true
	case *schemas.Value_Bool:
		return strconv.AppendBool(b, k.Bool), true
	case *schemas.Value_TimeUnixNano:
		return time.Unix(0, k.TimeUnixNano).UTC().AppendFormat(b, time.RFC3339Nano), true
	}
	return b, false
}

// appendToken appends s as an RFC 5424 header token: PRINTUSASCII (33..126)
// only, anything else becoming '_', at most max bytes; "-" (NILVALUE) when
// s is empty.
func appendToken[S ~string | ~[]byte](b []byte, s S, max int) []byte {
	if len(s) == 0 {
		return append(b, '-')
	}
	if len(s) > max {
		s = s[:max]
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 33 || c > 126 {
			c = '_'
		}
		b = append(b, c)
	}
	return b
}

// appendTokenValue appends a header token made from a field's value; "-"
// when the field is absent or not a scalar.
func appendTokenValue(b []byte, v *schemas.Value, max int) []byte {
	if s, ok := v.GetKind().(*schemas.Value_Str); ok {
		return appendToken(b, s.Str, max)
	}
	var tmp [64]byte
	text, _ := scalar(tmp[:0], v)
	return appendToken(b, text, max)
}

func isEmptyStr(v *schemas.Value) bool {
	s, ok := v.GetKind().(*schemas.Value_Str)
	return ok && s.Str == ""
}

// appendSDName appends an SD-NAME (an SD-ID or a PARAM-NAME): PRINTUSASCII
// except '=', ' ', ']' and '"', at most 32 bytes. An empty name becomes "_"
// so the element stays parseable.
func appendSDName(b []byte, s string) []byte {
	if s == "" {
		return append(b, '_')
	}
	if len(s) > maxSDName {
		s = s[:maxSDName]
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 33 || c > 126 || c == '=' || c == ']' || c == '"' {
			c = '_'
		}
		b = append(b, c)
	}
	return b
}

// appendParamValue appends an SD PARAM-VALUE with the three escapes RFC
// 5424 section 6.3.3 requires: '"', '\' and ']' get a backslash. Invalid
// UTF-8 becomes U+FFFD: PARAM-VALUE is UTF-8 by definition.
func appendParamValue(b []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c == '"' || c == '\\' || c == ']' {
				b = append(b, '\\')
			}
			b = append(b, c)
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, "\uFFFD"...)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return b
}

// append5424 writes HEADER SP STRUCTURED-DATA [SP MSG] of RFC 5424:
//
//	<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD...] MSG
//
// MSG is written as is (MSG-ANY, no BOM): bytes that are not UTF-8 are not
// altered, and newlines are carried (the framing decides what becomes of
// them).
func (f *Formatter) append5424(b []byte, ev *schemas.Event) []byte {
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(f.pri(ev)), 10)
	b = append(b, '>', '1', ' ')
	if ns := eventTime(ev); ns != 0 {
		// TIME-SECFRAC allows at most six digits.
		b = time.Unix(0, ns).UTC().AppendFormat(b, "2006-01-02T15:04:05.999999Z07:00")
	} else {
		b = append(b, '-')
	}
	b = append(b, ' ')
	host := ev.Host
	if host == "" {
		host = f.Hostname
	}
	b = appendToken(b, host, maxHostname)
	b = append(b, ' ')
	b = appendToken(b, ev.Service, maxAppName)
	b = append(b, ' ')
	b = appendTokenValue(b, field(ev, keyPID), maxProcID)
	b = append(b, ' ')
	b = appendTokenValue(b, field(ev, keyMsgID), maxMsgID)
	b = append(b, ' ')
	b = f.appendSD(b, ev)
	if ev.Message != "" {
		b = append(b, ' ')
		b = append(b, ev.Message...)
	}
	return b
}

// appendSD writes the id element and the elements of the "sd" field (a map
// of maps; other shapes are ignored), or "-" when there are none. An
// element with the id element's SD-ID is left out of the field's elements
// (an event that came from another herald carries one), as RFC 5424 forbids
// an SD-ID twice in one message. Parameters whose values are lists or maps
// are left out: SD parameters are text.
func (f *Formatter) appendSD(b []byte, ev *schemas.Event) []byte {
	start := len(b)
	if f.IDElement != "" && ev.Id != "" {
		b = append(b, '[')
		b = appendSDName(b, f.IDElement)
		b = append(b, ` id="`...)
		b = appendParamValue(b, ev.Id)
		b = append(b, '"', ']')
	}
	if sd := field(ev, keySD).GetMap(); sd != nil {
		var tmp []byte
		for _, el := range sd.GetFields() {
			params := el.GetValue().GetMap()
			if params == nil || (f.IDElement != "" && el.GetKey() == f.IDElement) {
				continue
			}
			b = append(b, '[')
			b = appendSDName(b, el.GetKey())
			for _, p := range params.GetFields() {
				v := p.GetValue()
				s, isStr := v.GetKind().(*schemas.Value_Str)
				if !isStr {
					var ok bool
					if tmp, ok = scalar(tmp[:0], v); !ok {
						continue
					}
				}
				b = append(b, ' ')
				b = appendSDName(b, p.GetKey())
				b = append(b, '=', '"')
				if isStr {
					b = appendParamValue(b, s.Str)
				} else {
					b = appendParamValue(b, string(tmp))
				}
				b = append(b, '"')
			}
			b = append(b, ']')
		}
	}
	if len(b) == start {
		b = append(b, '-')
	}
	return b
}

// append3164 writes the BSD format of RFC 3164 section 4.1:
//
//	<PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG
//
// The timestamp has no year and no zone; it is in f.Location. The format
// has no place for MSGID or structured data (nor for the event id), which
// are left out. TAG is the service, or "-".
func (f *Formatter) append3164(b []byte, ev *schemas.Event) []byte {
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(f.pri(ev)), 10)
	b = append(b, '>')
	ns := eventTime(ev)
	var t time.Time
	if ns != 0 {
		t = time.Unix(0, ns)
	} else {
		t = time.Now()
	}
	loc := f.Location
	if loc == nil {
		loc = time.Local
	}
	b = t.In(loc).AppendFormat(b, time.Stamp)
	b = append(b, ' ')
	host := ev.Host
	if host == "" {
		host = f.Hostname
	}
	if host == "" {
		host = "-"
	}
	b = appendToken(b, host, maxHostname)
	b = append(b, ' ')
	b = appendToken(b, ev.Service, maxAppName)
	if pid := field(ev, keyPID); pid != nil && !(pid.GetKind() == nil || isEmptyStr(pid)) {
		b = append(b, '[')
		b = appendTokenValue(b, pid, maxProcID)
		b = append(b, ']')
	}
	b = append(b, ':')
	if ev.Message != "" {
		b = append(b, ' ')
		b = append(b, ev.Message...)
	}
	return b
}
