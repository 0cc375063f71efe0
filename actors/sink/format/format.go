package format

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/herald-router/herald/schemas"
)

// The formats a Spec can name.
const (
	JSON     = "json"
	CSV      = "csv"
	HTML     = "html"
	XML      = "xml"
	KV       = "kv"
	Template = "template"
)

// Names lists the formats, for messages and docs.
var Names = []string{JSON, CSV, HTML, XML, KV, Template}

// Spec is a format as a sink's options give it. The keys a sink exposes
// (format, fields, template, header) fill it; Compile checks it.
//
// Fields is ELAPI's field set: which items to print and in which order.
// An item is an envelope key (id, time, received, host, service, class,
// certainty, source, peer, message, raw_b64) or the key of one of the
// event's fields; a field whose key is itself an envelope key is named
// "_"+key, as in the JSON form. "@" stands for every field of the event not
// named elsewhere in the set, in event order; "@n" for those remaining
// fields from the n-th on (1-based: "@1" is "@", "@3" skips the first two).
// At most one "@" item per set. Envelope keys are not part of "@": name
// them. An empty set means DefaultFields. With json an empty set keeps the
// plain JSON form (AppendJSON); a set writes the named keys in set order.
//
// Template is the free format: text with %(name) placeholders, where name
// is anything a field set may hold ("%(@)" writes the remaining fields as
// key=value pairs); "%%" writes a percent sign, and any other "%" is an
// error. Each event is the template's text and a newline.
type Spec struct {
	Format   string
	Fields   []string
	Template string
	// Header writes the format's header and footer: the CSV header line,
	// the HTML document and table head and foot, the XML declaration and
	// root element. JSON, kv and template have none.
	Header bool
}

// DefaultFields is the field set used when a Spec names none: the envelope
// in the JSON form's order, then every field.
var DefaultFields = []string{"id", "time", "received", "host", "service", "class", "certainty", "source", "peer", "message", "@"}

// SpecError is a problem with one key of a Spec.
type SpecError struct {
	// Key is the option key at fault: "format", "fields[2]" or "template".
	Key    string
	Reason string
}

func (e *SpecError) Error() string { return e.Key + ": " + e.Reason }

// envelope items, in the JSON form's order.
type envKey uint8

const (
	envNone envKey = iota
	envID
	envTime
	envReceived
	envHost
	envService
	envClass
	envCertainty
	envSource
	envPeer
	envMessage
	envRawB64
)

var envByName = map[string]envKey{
	"id": envID, "time": envTime, "received": envReceived, "host": envHost, "service": envService,
	"class": envClass, "certainty": envCertainty, "source": envSource, "peer": envPeer,
	"message": envMessage, "raw_b64": envRawB64,
}

type itemKind uint8

const (
	itemEnvelope itemKind = iota
	itemField
	itemRest
)

// item is one entry of a compiled field set.
type item struct {
	kind itemKind
	env  envKey
	name string // as written in the set: the column name, the key written
	key  string // itemField: the event field's own key
	from int    // itemRest: 1-based index of the first remaining field
}

// segment is a piece of a compiled template: literal text, then an item.
type segment struct {
	text string
	item *item
}

// Formatter serializes events in one format. Compile makes one; it keeps
// scratch space, so it is not safe for concurrent use: each provider
// instance compiles its own.
type Formatter struct {
	format   string
	items    []item
	named    map[string]bool // event field keys named by the set or template
	segments []segment
	header   bool
	plain    bool // json without a set: AppendJSON
	scratch  []byte
	rest     []byte
}

// Compile checks spec and returns its Formatter.
func Compile(spec Spec) (*Formatter, error) {
	f := &Formatter{format: spec.Format, header: spec.Header, named: map[string]bool{}}
	switch spec.Format {
	case JSON, CSV, HTML, XML, KV:
		if spec.Template != "" {
			return nil, &SpecError{"template", fmt.Sprintf("only used with format %s, the format is %s", Template, spec.Format)}
		}
	case Template:
		if spec.Template == "" {
			return nil, &SpecError{"template", "required with format " + Template + ": the text of each event, with %(name) placeholders"}
		}
		if len(spec.Fields) > 0 {
			return nil, &SpecError{"fields", "not used with format " + Template + ": the template names what to print"}
		}
		if err := f.compileTemplate(spec.Template); err != nil {
			return nil, err
		}
		return f, nil
	default:
		return nil, &SpecError{"format", fmt.Sprintf("want one of %s, got %q", strings.Join(Names, ", "), spec.Format)}
	}
	set := spec.Fields
	if len(set) == 0 {
		if spec.Format == JSON {
			f.plain = true
			return f, nil
		}
		set = DefaultFields
	}
	seen := map[string]bool{}
	rest := false
	for i, name := range set {
		it, err := parseItem(name)
		if err != nil {
			return nil, &SpecError{fmt.Sprintf("fields[%d]", i), err.Error()}
		}
		if seen[name] {
			return nil, &SpecError{fmt.Sprintf("fields[%d]", i), fmt.Sprintf("%q is named twice", name)}
		}
		seen[name] = true
		if it.kind == itemRest {
			if rest {
				return nil, &SpecError{fmt.Sprintf("fields[%d]", i), "only one @ item per set"}
			}
			rest = true
		}
		if it.kind == itemField {
			f.named[it.key] = true
		}
		f.items = append(f.items, it)
	}
	return f, nil
}

// parseItem reads one name of a field set or template placeholder.
func parseItem(name string) (item, error) {
	if name == "" {
		return item{}, fmt.Errorf("empty name")
	}
	if name[0] == '@' {
		if name == "@" {
			return item{kind: itemRest, name: name, from: 1}, nil
		}
		n, err := strconv.Atoi(name[1:])
		if err != nil || n < 1 || name[1] == '+' {
			return item{}, fmt.Errorf("want @ or @n with n ≥ 1 (the remaining fields from the n-th on), got %q", name)
		}
		return item{kind: itemRest, name: name, from: n}, nil
	}
	if k, ok := envByName[name]; ok {
		return item{kind: itemEnvelope, env: k, name: name}, nil
	}
	key := name
	if len(name) > 1 && name[0] == '_' && envelopeKeys[name[1:]] {
		key = name[1:] // the event's own "host" field, written as _host
	}
	return item{kind: itemField, name: name, key: key}, nil
}

func (f *Formatter) compileTemplate(tpl string) error {
	text := make([]byte, 0, len(tpl))
	rest := false
	for i := 0; i < len(tpl); i++ {
		c := tpl[i]
		if c != '%' {
			text = append(text, c)
			continue
		}
		if i+1 < len(tpl) && tpl[i+1] == '%' {
			text = append(text, '%')
			i++
			continue
		}
		if i+1 >= len(tpl) || tpl[i+1] != '(' {
			return &SpecError{"template", fmt.Sprintf("%% at byte %d starts no placeholder: write %%(name), or %%%% for a percent sign", i)}
		}
		end := strings.IndexByte(tpl[i+2:], ')')
		if end < 0 {
			return &SpecError{"template", fmt.Sprintf("%%( at byte %d is not closed by )", i)}
		}
		name := tpl[i+2 : i+2+end]
		it, err := parseItem(name)
		if err != nil {
			return &SpecError{"template", fmt.Sprintf("placeholder at byte %d: %v", i, err)}
		}
		if it.kind == itemRest {
			if rest {
				return &SpecError{"template", "only one %(@) placeholder per template"}
			}
			rest = true
		}
		if it.kind == itemField {
			f.named[it.key] = true
		}
		f.segments = append(f.segments, segment{text: string(text), item: &it})
		text = text[:0]
		i += 2 + end
	}
	f.segments = append(f.segments, segment{text: string(text)})
	return nil
}

// Format is the name of the compiled format.
func (f *Formatter) Format() string { return f.format }

// Header is what a new file starts with, or nil: the CSV header line, the
// HTML document up to the table body, the XML declaration and root start.
func (f *Formatter) Header() []byte {
	if !f.header {
		return nil
	}
	switch f.format {
	case CSV:
		var b []byte
		for i, it := range f.items {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendCSV(b, it.name, len(f.items) == 1)
		}
		return append(b, '\n')
	case HTML:
		b := []byte(htmlHead)
		for _, it := range f.items {
			b = append(b, "<th>"...)
			b = appendHTML(b, it.name)
			b = append(b, "</th>"...)
		}
		return append(b, "</tr></thead>\n<tbody>\n"...)
	case XML:
		return []byte(xmlHead)
	}
	return nil
}

// Footer is what a complete file ends with, or nil.
func (f *Formatter) Footer() []byte {
	if !f.header {
		return nil
	}
	switch f.format {
	case HTML:
		return []byte(htmlFoot)
	case XML:
		return []byte(xmlFoot)
	}
	return nil
}

// AppendMarker appends a launch marker: a line that says a writer started,
// in a form the format's readers skip or show as such. JSON: an object
// {"marker":text}; kv: marker=text; CSV: a comment line "# text" (not in RFC
// 4180: readers need their comment option, e.g. encoding/csv's Comment);
// template: the text; XML: a comment; HTML: a table row of class marker.
func (f *Formatter) AppendMarker(b []byte, text string) []byte {
	switch f.format {
	case JSON:
		b = append(b, `{"marker":`...)
		b = appendString(b, text)
		return append(b, '}', '\n')
	case KV:
		b = append(b, "marker="...)
		return append(appendKV(b, text), '\n')
	case CSV:
		b = append(b, "# "...)
		return append(appendLine(b, text), '\n')
	case Template:
		return append(appendLine(b, text), '\n')
	case XML:
		b = append(b, "<!-- "...)
		b = appendXMLComment(b, text)
		return append(b, " -->\n"...)
	case HTML:
		b = append(b, `<tr class="marker"><td colspan="`...)
		b = strconv.AppendInt(b, int64(max(len(f.items), 1)), 10)
		b = append(b, `">`...)
		b = appendHTML(b, text)
		return append(b, "</td></tr>\n"...)
	}
	return b
}

// Append appends ev as one record of the format, newline included.
func (f *Formatter) Append(b []byte, ev *schemas.Event) []byte {
	switch f.format {
	case JSON:
		if f.plain {
			return AppendJSON(b, ev)
		}
		return f.appendJSONSet(b, ev)
	case CSV:
		return f.appendCSVRow(b, ev)
	case HTML:
		return f.appendHTMLRow(b, ev)
	case XML:
		return f.appendXMLEvent(b, ev)
	case KV:
		return f.appendKVLine(b, ev)
	case Template:
		return f.appendTemplate(b, ev)
	}
	return b
}

// text is the plain-text form of one item: either a string the format must
// escape, or bytes that need no escaping in any format (numbers, times,
// booleans), which live in the Formatter's scratch space.
type text struct {
	s       string
	safe    []byte
	isSafe  bool
	present bool
	binary  bool // s is base64 of bytes (XML marks it so)
}

// envText is envelope item k of ev. Absent means what the JSON form leaves
// out: empty strings, zero times, the certainty of an unclassified event;
// the message is always present.
func (f *Formatter) envText(ev *schemas.Event, k envKey) text {
	str := func(s string) text { return text{s: s, present: s != ""} }
	switch k {
	case envID:
		return str(ev.Id)
	case envHost:
		return str(ev.Host)
	case envService:
		return str(ev.Service)
	case envClass:
		return str(ev.Class)
	case envSource:
		return str(ev.Source)
	case envPeer:
		return str(ev.Peer)
	case envMessage:
		return text{s: ev.Message, present: true}
	case envTime, envReceived:
		ns := ev.TimeUnixNano
		if k == envReceived {
			ns = ev.ReceivedUnixNano
		}
		if ns == 0 {
			return text{}
		}
		f.scratch = time.Unix(0, ns).UTC().AppendFormat(f.scratch[:0], time.RFC3339Nano)
		return text{safe: f.scratch, isSafe: true, present: true}
	case envCertainty:
		if ev.Class == "" {
			return text{}
		}
		f.scratch = strconv.AppendFloat(f.scratch[:0], float64(ev.Certainty), 'g', 3, 32)
		return text{safe: f.scratch, isSafe: true, present: true}
	case envRawB64:
		if len(ev.Raw) == 0 {
			return text{}
		}
		f.scratch = base64.StdEncoding.AppendEncode(f.scratch[:0], ev.Raw)
		return text{s: unsafeString(f.scratch), present: true, binary: true}
	}
	return text{}
}

// valueText is the plain-text form of a field's value: strings as they
// are, numbers and times as in the JSON form, bytes as base64, lists and
// maps as their JSON.
func (f *Formatter) valueText(v *schemas.Value) text {
	switch k := v.GetKind().(type) {
	case *schemas.Value_Str:
		return text{s: k.Str, present: true}
	case *schemas.Value_Int:
		f.scratch = strconv.AppendInt(f.scratch[:0], k.Int, 10)
	case *schemas.Value_Float:
		// NaN and ±Inf come out as NaN, +Inf, -Inf: plain text too.
		f.scratch = strconv.AppendFloat(f.scratch[:0], k.Float, 'g', -1, 64)
	case *schemas.Value_Bool:
		f.scratch = strconv.AppendBool(f.scratch[:0], k.Bool)
	case *schemas.Value_TimeUnixNano:
		f.scratch = time.Unix(0, k.TimeUnixNano).UTC().AppendFormat(f.scratch[:0], time.RFC3339Nano)
	case *schemas.Value_Bytes:
		f.scratch = base64.StdEncoding.AppendEncode(f.scratch[:0], k.Bytes)
		return text{s: unsafeString(f.scratch), present: true, binary: true}
	case *schemas.Value_List, *schemas.Value_Map:
		f.scratch = appendValue(f.scratch[:0], v)
		return text{s: unsafeString(f.scratch), present: true}
	default:
		return text{s: "", present: true}
	}
	return text{safe: f.scratch, isSafe: true, present: true}
}

// fieldByKey is the first field of ev with key k.
func fieldByKey(ev *schemas.Event, k string) *schemas.Field {
	for _, fl := range ev.Fields {
		if fl.Key == k {
			return fl
		}
	}
	return nil
}

// itemText is the text of a named (non-rest) item.
func (f *Formatter) itemText(ev *schemas.Event, it *item) text {
	if it.kind == itemEnvelope {
		return f.envText(ev, it.env)
	}
	if fl := fieldByKey(ev, it.key); fl != nil {
		return f.valueText(fl.Value)
	}
	return text{}
}

// remaining calls fn for each field of ev that the set does not name,
// from the it.from-th on, with the key it is written under.
func (f *Formatter) remaining(ev *schemas.Event, it *item, fn func(name string, fl *schemas.Field)) {
	n := 0
	for _, fl := range ev.Fields {
		if f.named[fl.Key] {
			continue
		}
		n++
		if n < it.from {
			continue
		}
		name := fl.Key
		if envelopeKeys[name] {
			name = "_" + name
		}
		fn(name, fl)
	}
}

// restKV writes the remaining fields as key=value pairs into f.rest and
// returns them as a string valid until the next call.
func (f *Formatter) restKV(ev *schemas.Event, it *item) string {
	f.rest = f.rest[:0]
	f.remaining(ev, it, func(name string, fl *schemas.Field) {
		if len(f.rest) > 0 {
			f.rest = append(f.rest, ' ')
		}
		f.rest = appendKV(f.rest, name)
		f.rest = append(f.rest, '=')
		t := f.valueText(fl.Value)
		if t.isSafe {
			f.rest = append(f.rest, t.safe...)
		} else {
			f.rest = appendKV(f.rest, t.s)
		}
	})
	return unsafeString(f.rest)
}

// unsafeString views b as a string without copying. The callers use the
// string before b's backing array is written again.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// appendLine appends s with C0 controls and DEL written as Go-style escapes
// (\n, \r, \t, \x1b) so that one event stays one line, and invalid UTF-8
// as U+FFFD. It is the escaping of the template format; it is meant for
// people reading, and a backslash in the value is written as it is.
func appendLine(b []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != 0x7f && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			b = append(b, s[start:i]...)
			b = append(b, "\uFFFD"...)
			i++
			start = i
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'x', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	return append(b, s[start:]...)
}
