package classifier

import (
	"strconv"
	"time"

	"github.com/herald-router/herald/schemas"
)

// fieldWriter builds fields from a few slabs, so that a field costs about
// one allocation (its value's kind) instead of three; done appends them to
// the event. It does not hold the event, so that callers' events can stay
// on their stacks.
type fieldWriter struct {
	ptrs   []*schemas.Field
	fields []schemas.Field
	values []schemas.Value
	strs   []schemas.Value_Str
}

// newFieldWriter makes room for about n fields.
func newFieldWriter(n int) fieldWriter {
	return fieldWriter{
		ptrs:   make([]*schemas.Field, 0, n),
		fields: make([]schemas.Field, 0, n),
		values: make([]schemas.Value, 0, n),
		strs:   make([]schemas.Value_Str, 0, n),
	}
}

// done appends the fields to ev's.
func (f *fieldWriter) done(ev *schemas.Event) {
	if len(ev.Fields) == 0 {
		ev.Fields = f.ptrs
		return
	}
	ev.Fields = append(ev.Fields, f.ptrs...)
}

// add adds a field of key with kind k (nil: null) and returns its value.
func (f *fieldWriter) add(key string, k isKind) *schemas.Value {
	f.values = append(f.values, schemas.Value{})
	v := &f.values[len(f.values)-1]
	setKind(v, k)
	f.fields = append(f.fields, schemas.Field{Key: valid(key), Value: v})
	f.ptrs = append(f.ptrs, &f.fields[len(f.fields)-1])
	return v
}

func (f *fieldWriter) strS(key, s string) {
	f.strs = append(f.strs, schemas.Value_Str{Str: valid(s)})
	f.add(key, &f.strs[len(f.strs)-1])
}

func (f *fieldWriter) str(key string, b []byte) { f.strS(key, validString(b)) }

// dashStr adds b unless it is empty or "-" (the logs' "no value").
func (f *fieldWriter) dashStr(key string, b []byte) {
	if len(b) > 0 && !isDash(b) {
		f.str(key, b)
	}
}

func (f *fieldWriter) intV(key string, v int64) { f.add(key, &schemas.Value_Int{Int: v}) }

func (f *fieldWriter) floatV(key string, v float64) { f.add(key, &schemas.Value_Float{Float: v}) }

// intOrStr adds b as an Int when it is one, else as written.
func (f *fieldWriter) intOrStr(key string, b []byte) {
	if v, err := strconv.ParseInt(string(b), 10, 64); err == nil {
		f.intV(key, v)
		return
	}
	f.str(key, b)
}

// floatOrStr adds b as a Float when it is one, else as written.
func (f *fieldWriter) floatOrStr(key string, b []byte) {
	if v, err := strconv.ParseFloat(string(b), 64); err == nil {
		f.floatV(key, v)
		return
	}
	f.str(key, b)
}

// isKind is the oneof interface of schemas.Value's kinds.
type isKind interface{}

func setKind(v *schemas.Value, k isKind) {
	switch k := k.(type) {
	case *schemas.Value_Str:
		v.Kind = k
	case *schemas.Value_Int:
		v.Kind = k
	case *schemas.Value_Float:
		v.Kind = k
	case *schemas.Value_Bool:
		v.Kind = k
	case *schemas.Value_List:
		v.Kind = k
	case *schemas.Value_Map:
		v.Kind = k
	case *schemas.Value_TimeUnixNano:
		v.Kind = k
	}
}

// envelope picks the message, host, time and service of a JSON or logfmt
// record from its keys. Each attribute takes the value of the key with the
// best (lowest) rank.
type envelope struct {
	msg, host, service    string
	msgR, hostR, serviceR int
	time                  time.Time
	timeR                 int
	bunyan                int // keys of a Bunyan record seen ("hostname", "pid")
	name                  string
}

const noRank = 1 << 30

func newEnvelope() envelope {
	return envelope{msgR: noRank, hostR: noRank, serviceR: noRank, timeR: noRank}
}

// Keys that carry the envelope, best first.
var (
	messageKeys = map[string]int{"msg": 0, "message": 1, "MESSAGE": 2, "@message": 3, "short_message": 4, "log": 5}
	hostKeys    = map[string]int{"host": 0, "hostname": 1, "_HOSTNAME": 2, "host.name": 3, "HOSTNAME": 4}
	timeKeys    = map[string]int{"time": 0, "timestamp": 1, "@timestamp": 2, "ts": 3, "__REALTIME_TIMESTAMP": 4, "datetime": 5, "date": 6}
	serviceKeys = map[string]int{"app": 0, "service": 1, "service.name": 2, "application": 3, "app_name": 4, "SYSLOG_IDENTIFIER": 5, "program": 6}
)

// str offers a string value of key.
func (e *envelope) str(key, v string, local *time.Location) {
	if r, ok := messageKeys[key]; ok && r < e.msgR {
		if key == "log" { // Docker json-file keeps the line's LF
			v = string(trimEOL([]byte(v)))
		}
		e.msg, e.msgR = v, r
	}
	if r, ok := hostKeys[key]; ok && r < e.hostR && v != "" {
		e.host, e.hostR = v, r
	}
	if r, ok := serviceKeys[key]; ok && r < e.serviceR && v != "" && isLetter(v[0]) {
		e.service, e.serviceR = v, r
	}
	if r, ok := timeKeys[key]; ok && r < e.timeR {
		if t, ok := parseAnyTime(v, local); ok {
			e.time, e.timeR = t, r
		}
	}
	switch key {
	case "name":
		e.name = v
	case "hostname":
		e.bunyan++
	}
}

// num offers a number value of key: epoch time in s, ms, µs or ns. i is
// the value when it is an integer (isInt), f otherwise.
func (e *envelope) num(key string, i int64, f float64, isInt bool) {
	if r, ok := timeKeys[key]; ok && r < e.timeR {
		t, ok := epochTime(f)
		if isInt {
			t, ok = epochInt(i)
		}
		if ok {
			e.time, e.timeR = t, r
		}
	}
	if key == "pid" {
		e.bunyan++
	}
}

// fill sets ev's envelope from what was offered. A Bunyan record's "name"
// is its service.
func (e *envelope) fill(ev *schemas.Event) {
	if e.serviceR == noRank && e.name != "" && e.bunyan >= 2 && isLetter(e.name[0]) {
		e.service, e.serviceR = e.name, 0
	}
	if e.msgR != noRank {
		ev.Message = e.msg
	}
	ev.Host, ev.Service = e.host, e.service
	if e.timeR != noRank {
		ev.TimeUnixNano = e.time.UnixNano()
	}
}

func isLetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' || c >= 0x80 }

// parseAnyTime reads an RFC 3339 / ISO 8601 stamp (zoneless ones in local)
// or a string of epoch digits (journald's microseconds).
func parseAnyTime(s string, local *time.Location) (time.Time, bool) {
	b := []byte(s)
	if t, n, ok := isoStamp(b, local); ok && n == len(b) {
		return t, true
	}
	if len(s) >= 9 && len(s) <= 19 && allDigits(b) {
		if v, err := strconv.ParseInt(s, 10, 64); err == nil {
			return epochInt(v)
		}
	}
	return time.Time{}, false
}

// epochTime reads v as seconds, milliseconds, microseconds or nanoseconds
// since the epoch, whichever gives a time between 2001 and 2286.
func epochTime(v float64) (time.Time, bool) {
	switch {
	case v >= 1e9 && v < 1e10:
		return time.Unix(0, int64(v*1e9)), true
	case v >= 1e12 && v < 1e13:
		return time.Unix(0, int64(v*1e6)), true
	case v >= 1e15 && v < 1e16:
		return time.Unix(0, int64(v*1e3)), true
	case v >= 1e18 && v < 1e19:
		return time.Unix(0, int64(v)), true
	}
	return time.Time{}, false
}

// epochInt is epochTime for an integer, without rounding.
func epochInt(v int64) (time.Time, bool) {
	switch {
	case v >= 1e9 && v < 1e10:
		return time.Unix(v, 0), true
	case v >= 1e12 && v < 1e13:
		return time.UnixMilli(v), true
	case v >= 1e15 && v < 1e16:
		return time.UnixMicro(v), true
	case v >= 1e18:
		return time.Unix(0, v), true
	}
	return time.Time{}, false
}
