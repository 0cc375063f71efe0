package elapi

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// Reserved attributes: herald's names for the envelope of an event (see
// the package doc). Only the ones listed as settable may be given.
const (
	AttrHost    = "__host__"    // string, settable: the host the event comes from (default: the dispatcher's)
	AttrApp     = "__app__"     // string, settable: the application (default: WithApplication)
	AttrMessage = "__message__" // string, settable: the human-readable text
	AttrTime    = "__time__"    // time, settable: when it happened (default: when it was logged)
	AttrPid     = "__pid__"     // int, settable: stored as the field "pid"
	AttrStamp   = "__stamp__"   // derived by herald from __time__; not settable
	AttrLoco    = "__loco__"    // derived by herald from __time__; not settable
	// AttrTemplate (string) names a template of herald's resolver config,
	// merged into the event by herald; kept as a field.
	AttrTemplate = "__template__"
)

// Resolvable attributes: fields herald's resolver fills in.
const (
	ResStamp   = "R_stamp__"   // the event time as text, in the resolver's format and zone; use Resolve
	ResTime    = "R_time__"    // the event time in UTC seconds; use Resolve (herald adds it anyway)
	ResLoco    = "R_loco__"    // the resolver zone's UTC offset at the event time; use Resolve
	ResMessage = "R_message__" // a text whose %(key) placeholders herald fills in; use String
	ResError   = "R_error__"   // herald's own: what it could not do for the event; not settable
)

// pidField is the ordinary field AttrPid is stored as (herald's resolver
// answers __pid__ from it).
const pidField = "pid"

// Message returns the field that sets an event's message.
func Message(text string) Field { return String(AttrMessage, text) }

// Host returns the field that sets an event's host.
func Host(name string) Field { return String(AttrHost, name) }

// App returns the field that sets an event's application name.
func App(name string) Field { return String(AttrApp, name) }

// At returns the field that sets an event's time.
func At(t time.Time) Field { return Time(AttrTime, t) }

// Pid returns the field that sets an event's process id.
func Pid(pid int) Field { return Int(AttrPid, int64(pid)) }

// UseTemplate returns the field that names a template of herald's
// resolver config (a server-side template; see NewTemplate for one in the
// application).
func UseTemplate(name string) Field { return String(AttrTemplate, name) }

// Resolve returns a resolvable attribute without a value (ResStamp,
// ResTime, ResLoco), for herald to fill in at the place it has among the
// fields.
func Resolve(key string) Field { return Null(key) }

// Event is an ordered collection of typed fields plus the envelope (host,
// application, message, time). Build one with NewEvent or FromTemplate;
// the zero Event is empty and valid. An Event may be logged many times and
// changed between logs (each log takes a copy); it is not safe for
// concurrent change.
type Event struct {
	host, app, message string
	time               time.Time
	fields             []Field
}

// NewEvent builds an event from fields, in order. A key given twice, or
// any key that breaks the rules of the package doc, is an error (a
// *KeyError naming it).
func NewEvent(fields ...Field) (*Event, error) {
	ev := &Event{fields: make([]Field, 0, len(fields))}
	if err := ev.add(fields, false); err != nil {
		return nil, err
	}
	return ev, nil
}

// Set adds fields to the event; a key it already has takes the new value at
// its old place. When a field is invalid nothing changes.
func (e *Event) Set(fields ...Field) error { return e.add(fields, true) }

// Fields returns the event's fields in order (envelope attributes not
// included). The slice is the event's own: do not change it.
func (e *Event) Fields() []Field { return e.fields }

// Get returns the value of key; reserved envelope keys (AttrHost, AttrApp,
// AttrMessage, AttrTime) answer the envelope.
func (e *Event) Get(key string) (Value, bool) {
	switch key {
	case AttrHost:
		return StringValue(e.host), e.host != ""
	case AttrApp:
		return StringValue(e.app), e.app != ""
	case AttrMessage:
		return StringValue(e.message), e.message != ""
	case AttrTime:
		return TimeValue(e.time), !e.time.IsZero()
	case AttrPid:
		key = pidField
	}
	if i := e.index(key); i >= 0 {
		return e.fields[i].Value, true
	}
	return Value{}, false
}

// Clone returns a deep enough copy: the fields slice is new, values (which
// are immutable) are shared.
func (e *Event) Clone() *Event {
	c := *e
	c.fields = append([]Field(nil), e.fields...)
	return &c
}

func (e *Event) index(key string) int {
	for i := range e.fields {
		if e.fields[i].Key == key {
			return i
		}
	}
	return -1
}

// add validates and applies fields. replace says whether a key the event
// has gets the new value (Set, templates) or is an error (NewEvent).
func (e *Event) add(fields []Field, replace bool) error {
	var seen map[string]struct{}
	if !replace && len(fields) > 8 {
		seen = make(map[string]struct{}, len(fields))
	}
	for _, f := range fields {
		if err := checkKey(f); err != nil {
			return err
		}
		if err := checkValue(f.Key, f.Value); err != nil {
			return err
		}
	}
	// Every field is valid: apply them (a duplicate in NewEvent fails the
	// whole build, so the event is never half-changed by a Set).
	start := len(e.fields)
	for _, f := range fields {
		key := f.Key
		switch key {
		case AttrHost:
			e.host = f.Value.str
			continue
		case AttrApp:
			e.app = f.Value.str
			continue
		case AttrMessage:
			e.message = f.Value.str
			continue
		case AttrTime:
			e.time = f.Value.Time()
			continue
		case AttrPid:
			key = pidField
			f = Field{pidField, f.Value}
		}
		if !replace {
			// A duplicate among the fields of this call.
			dup := false
			if seen != nil {
				_, dup = seen[key]
				seen[key] = struct{}{}
			} else {
				for _, g := range e.fields[start:] {
					if g.Key == key {
						dup = true
						break
					}
				}
			}
			if dup {
				return &KeyError{Key: f.Key, Err: ErrDuplicateKey}
			}
			e.fields = append(e.fields, f)
			continue
		}
		if i := e.index(key); i >= 0 {
			e.fields[i].Value = f.Value
		} else {
			e.fields = append(e.fields, f)
		}
	}
	return nil
}

// checkKey applies the name-space rules to a top-level key.
func checkKey(f Field) error {
	k := f.Key
	if k == "" || !utf8.ValidString(k) {
		return &KeyError{Key: k, Err: ErrInvalidKey, Why: "keys are non-empty UTF-8 text"}
	}
	if isReserved(k) {
		want := KindNull
		switch k {
		case AttrHost, AttrApp, AttrMessage, AttrTemplate:
			want = KindString
		case AttrTime:
			want = KindTime
		case AttrPid:
			want = KindInt
		case AttrStamp, AttrLoco:
			return &KeyError{Key: k, Err: ErrReservedKey, Why: "herald derives it from " + AttrTime + "; set that instead"}
		default:
			return &KeyError{Key: k, Err: ErrReservedKey, Why: "\"__x__\" names are herald's; rename the key"}
		}
		if f.Value.kind != want {
			return &KeyError{Key: k, Err: ErrValueType, Why: "want " + want.String() + ", got " + f.Value.kind.String()}
		}
		return nil
	}
	if isResolvable(k) {
		switch k {
		case ResStamp, ResTime, ResLoco:
			// herald replaces the value; an integer R_time__ would mark the
			// event as resolved already, so no value is the only safe one.
			if f.Value.kind != KindNull {
				return &KeyError{Key: k, Err: ErrValueType, Why: "herald fills it in: give it with Resolve(" + strconv.Quote(k) + ")"}
			}
		case ResMessage:
			if f.Value.kind != KindString {
				return &KeyError{Key: k, Err: ErrValueType, Why: "want string (a text with %(key) placeholders), got " + f.Value.kind.String()}
			}
		case ResError:
			return &KeyError{Key: k, Err: ErrResolvableKey, Why: "herald writes it"}
		default:
			return &KeyError{Key: k, Err: ErrResolvableKey, Why: "herald resolves " + ResStamp + ", " + ResTime + ", " + ResLoco + " and " + ResMessage}
		}
	}
	return nil
}

// isReserved is herald's rule (actors/resolver/attrs.IsReserved): two
// underscores, a name not starting with an underscore, two underscores.
func isReserved(key string) bool {
	return len(key) > 4 && key[0] == '_' && key[1] == '_' && key[2] != '_' &&
		key[len(key)-1] == '_' && key[len(key)-2] == '_'
}

// isResolvable: "R_", a name, "__".
func isResolvable(key string) bool {
	return len(key) > 4 && key[0] == 'R' && key[1] == '_' && key[len(key)-1] == '_' && key[len(key)-2] == '_'
}

// checkValue checks text is UTF-8 (protobuf's rule for strings) and that
// map keys are valid and unique, naming the path of a bad one.
func checkValue(path string, v Value) error {
	switch v.kind {
	case KindString:
		if !utf8.ValidString(v.str) {
			return &KeyError{Key: path, Err: ErrInvalidText, Why: "use Bytes for arbitrary bytes"}
		}
	case KindList:
		for i, x := range v.List() {
			if x.kind == KindList || x.kind == KindMap || x.kind == KindString {
				if err := checkValue(path+"["+strconv.Itoa(i)+"]", x); err != nil {
					return err
				}
			}
		}
	case KindMap:
		fs := v.Map()
		for i, f := range fs {
			p := path + "." + f.Key
			if f.Key == "" || !utf8.ValidString(f.Key) {
				return &KeyError{Key: p, Err: ErrInvalidKey, Why: "keys are non-empty UTF-8 text"}
			}
			for _, g := range fs[:i] {
				if g.Key == f.Key {
					return &KeyError{Key: p, Err: ErrDuplicateKey}
				}
			}
			if err := checkValue(p, f.Value); err != nil {
				return err
			}
		}
	}
	return nil
}

// Template is a set of fields and envelope values that events share. It is
// immutable, so safe for concurrent use.
type Template struct {
	ev Event
}

// NewTemplate builds a template with the rules of NewEvent.
func NewTemplate(fields ...Field) (*Template, error) {
	ev, err := NewEvent(fields...)
	if err != nil {
		return nil, err
	}
	return &Template{ev: *ev}, nil
}

// FromTemplate builds an event from t (nil: none) and fields. The event
// starts as a copy of the template, its fields in template order; a field
// whose key the template has takes the event's value at the template's
// place (the event's own value wins), and the others follow in order.
func FromTemplate(t *Template, fields ...Field) (*Event, error) {
	if t == nil {
		return NewEvent(fields...)
	}
	ev := t.ev
	ev.fields = make([]Field, len(t.ev.fields), len(t.ev.fields)+len(fields))
	copy(ev.fields, t.ev.fields)
	// Keys given twice in fields are an error, as for NewEvent; a key the
	// template has is an override.
	for i, f := range fields {
		for _, g := range fields[:i] {
			if g.Key == f.Key {
				return nil, &KeyError{Key: f.Key, Err: ErrDuplicateKey}
			}
		}
	}
	if err := ev.add(fields, true); err != nil {
		return nil, err
	}
	return &ev, nil
}
