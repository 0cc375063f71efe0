package resolver

import (
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/lestrrat-go/strftime"

	"github.com/herald-router/herald/actors/resolver/attrs"
	"github.com/herald-router/herald/actors/stage"
	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/internal/ids"
	"github.com/herald-router/herald/schemas"
)

// FieldTime is R_time__: the event's time in UTC seconds (its own time when
// the record carries one, else the arrival time).
const FieldTime = attrs.RTime

// Processor resolves every event of a batch and sends it on to the router.
// Make one with New; the zero Processor resolves with the defaults of
// config.Default in UTC (not the machine's zone) and no templates. It is immutable, so safe for concurrent
// use, and a reload makes a new one.
type Processor struct {
	c *compiled
}

// compiled is a config.Resolver made ready for use.
type compiled struct {
	stamp      *strftime.Strftime
	zone       *time.Location
	missing    attrs.Missing
	maxMessage int
	templates  map[string]*template
	fallback   *template // resolver.default_template; nil for none
}

// template is a config template with its bases merged in.
type template struct {
	name   string
	fields []*schemas.Field // in template order; values shared read-only by every event
}

// New compiles cfg; a zero stamp_format, missing_key or max_message_size
// takes its default (as for a config.Resolver made in code). config.Parse
// validated a loaded config already, so an error here means a config that
// did not come from it.
func New(cfg config.Resolver) (Processor, error) {
	def := config.Default().Resolver
	if cfg.StampFormat == "" {
		cfg.StampFormat = def.StampFormat
	}
	if cfg.MissingKey == "" {
		cfg.MissingKey = def.MissingKey
	}
	if cfg.MaxMessageSize == 0 {
		cfg.MaxMessageSize = def.MaxMessageSize
	}
	c := &compiled{templates: map[string]*template{}, maxMessage: int(cfg.MaxMessageSize)}
	var err error
	if c.stamp, err = attrs.CompileStamp(cfg.StampFormat); err != nil {
		return Processor{}, fmt.Errorf("resolver.stamp_format: %w", err)
	}
	if c.zone, err = attrs.LoadZone(cfg.Zone); err != nil {
		return Processor{}, fmt.Errorf("resolver.zone: %w", err)
	}
	var ok bool
	if c.missing, ok = attrs.ParseMissing(cfg.MissingKey); !ok {
		return Processor{}, fmt.Errorf("resolver.missing_key: want %s, got %q", attrs.MissingModesText, cfg.MissingKey)
	}
	for name := range cfg.Templates {
		t, err := flatten(cfg.Templates, name, nil)
		if err != nil {
			return Processor{}, fmt.Errorf("resolver.templates.%s: %w", name, err)
		}
		c.templates[name] = t
	}
	if cfg.DefaultTemplate != "" {
		if c.fallback = c.templates[cfg.DefaultTemplate]; c.fallback == nil {
			return Processor{}, fmt.Errorf("resolver.default_template: no template named %q", cfg.DefaultTemplate)
		}
	}
	return Processor{c: c}, nil
}

// MustNew is New for a config that config.Parse accepted, where an error
// is a programmer's mistake.
func MustNew(cfg config.Resolver) Processor {
	p, err := New(cfg)
	if err != nil {
		panic(err)
	}
	return p
}

// flatten merges the base chain of template name; seen detects loops.
func flatten(ts map[string]*config.Template, name string, seen []string) (*template, error) {
	for _, s := range seen {
		if s == name {
			return nil, fmt.Errorf("base chain %s → %s loops", strings.Join(seen, " → "), name)
		}
	}
	ct := ts[name]
	if ct == nil {
		return nil, fmt.Errorf("no template named %q", name)
	}
	t := &template{name: name}
	if ct.Base != "" {
		base, err := flatten(ts, ct.Base, append(seen, name))
		if err != nil {
			return nil, err
		}
		t.fields = append(t.fields, base.fields...)
	}
	for _, k := range ct.OrderedKeys() {
		if attrs.IsReserved(k) {
			return nil, fmt.Errorf("field %q: a reserved name", k)
		}
		f := &schemas.Field{Key: k, Value: str(string(ct.Fields[k]))}
		if i := indexField(t.fields, k); i >= 0 {
			t.fields[i] = f // this template's value wins, at the base's place
		} else {
			t.fields = append(t.fields, f)
		}
	}
	return t, nil
}

// defaults is what the zero Processor uses.
var defaults = sync.OnceValue(func() *compiled {
	cfg := config.Default().Resolver
	cfg.Zone = "UTC" // the zero value must not depend on the machine
	return MustNew(cfg).c
})

func (p Processor) cfg() *compiled {
	if p.c == nil {
		return defaults()
	}
	return p.c
}

// Process implements stage.Processor. It never fails: what it cannot do
// for an event it says in the event's R_error__ field.
func (p Processor) Process(b *schemas.Batch) ([]stage.Output, error) {
	for i, ev := range b.Events {
		p.Resolve(ev, b.Id, i)
	}
	return []stage.Output{{Key: "resolved", Subject: bus.SubjectResolved, Events: b.Events}}, nil
}

// Resolve assigns ev its id, unless the intake gave one, merges its
// template and fills its resolvable attributes (see the package doc).
// batchID and index make the id deterministic.
func (p Processor) Resolve(ev *schemas.Event, batchID string, index int) {
	c := p.cfg()
	if ev.Id == "" {
		ev.Id = ids.Derived(time.Unix(0, ev.ReceivedUnixNano), batchID, index)
	}
	if resolvedBefore(ev) {
		return // a replay: keep every value
	}
	var problems []string
	var named string
	for _, f := range ev.Fields {
		if len(f.Key) < 5 || f.Key[0] != '_' {
			continue
		}
		if f.Key == attrs.Template {
			if s, ok := f.Value.GetKind().(*schemas.Value_Str); ok {
				named = s.Str
				continue
			}
			problems = append(problems, fmt.Sprintf("%s is not text: renamed _%s", f.Key, f.Key))
			f.Key = "_" + f.Key
		} else if attrs.IsReserved(f.Key) {
			problems = append(problems, fmt.Sprintf("reserved key %s renamed _%s", f.Key, f.Key))
			f.Key = "_" + f.Key
		}
	}
	t := c.fallback
	if named != "" {
		if nt := c.templates[named]; nt != nil {
			t = nt
		} else {
			problems = append(problems, fmt.Sprintf("unknown template %q", named))
		}
	}
	if t != nil {
		merge(ev, t)
	}
	when := eventTime(ev)
	var hasTime, hasMessage bool
	for _, f := range ev.Fields {
		switch f.Key {
		case attrs.RStamp:
			f.Value = str(c.stampOf(when))
		case attrs.RLoco:
			f.Value = integer(c.offsetAt(when))
		case attrs.RTime:
			f.Value, hasTime = integer(when/int64(time.Second)), true
		case attrs.RMessage:
			hasMessage = true
		}
	}
	if hasMessage {
		problems = p.renderMessages(ev, when, problems)
	}
	if !hasTime {
		ev.Fields = append(ev.Fields, &schemas.Field{Key: attrs.RTime, Value: integer(when / int64(time.Second))})
	}
	if len(problems) > 0 {
		addError(ev, strings.Join(problems, "; "))
	}
}

// resolvedBefore reports whether ev carries the mark of the resolver: an
// R_time__ field (the first one) holding an integer. A null or text
// R_time__ that an application sends is filled in instead.
func resolvedBefore(ev *schemas.Event) bool {
	i := indexField(ev.Fields, attrs.RTime)
	if i < 0 {
		return false
	}
	_, ok := ev.Fields[i].Value.GetKind().(*schemas.Value_Int)
	return ok
}

// merge appends the template's fields whose key ev lacks.
func merge(ev *schemas.Event, t *template) {
	own := len(ev.Fields)
	var keys map[string]bool
	if own*len(t.fields) > 256 { // big events: one map instead of a scan per template field
		keys = make(map[string]bool, own)
		for _, f := range ev.Fields {
			keys[f.Key] = true
		}
	}
	for _, tf := range t.fields {
		var has bool
		if keys != nil {
			has = keys[tf.Key]
		} else {
			has = indexField(ev.Fields[:own], tf.Key) >= 0
		}
		if !has {
			// A new Field per event: resolving may replace its Value, never
			// the shared Value's contents.
			ev.Fields = append(ev.Fields, &schemas.Field{Key: tf.Key, Value: tf.Value})
		}
	}
}

// renderMessages replaces each text R_message__ with its rendering.
func (p Processor) renderMessages(ev *schemas.Event, when int64, problems []string) []string {
	c := p.cfg()
	lookup := func(dst []byte, key string) ([]byte, bool) {
		if i := indexField(ev.Fields, key); i >= 0 {
			return appendText(dst, ev.Fields[i].Value), true
		}
		if v, ok := p.attribute(ev, key, when); ok {
			return appendText(dst, v), true
		}
		return dst, false
	}
	for _, f := range ev.Fields {
		if f.Key != attrs.RMessage {
			continue
		}
		s, ok := f.Value.GetKind().(*schemas.Value_Str)
		if !ok {
			problems = append(problems, "R_message__ is not text: left as it is")
			continue
		}
		out, r := attrs.Expand(make([]byte, 0, len(s.Str)+64), s.Str, lookup, c.missing, c.maxMessage)
		f.Value = str(string(out))
		if c.missing == attrs.MissingError && len(r.Missing) > 0 {
			problems = append(problems, "R_message__: missing "+strings.Join(r.Missing, ", "))
		}
		if r.Truncated {
			problems = append(problems, fmt.Sprintf("R_message__: cut at %d bytes", c.maxMessage))
		}
	}
	return problems
}

// Attribute returns the value of a reserved attribute of ev (__host__,
// __stamp__ ...) or of an envelope name (host, service, app, message, id,
// class, source, peer, time), as a %(key) placeholder sees it. Fields are
// not consulted. An empty envelope string is absent.
func (p Processor) Attribute(ev *schemas.Event, key string) (*schemas.Value, bool) {
	return p.attribute(ev, key, eventTime(ev))
}

func (p Processor) attribute(ev *schemas.Event, key string, when int64) (*schemas.Value, bool) {
	nonEmpty := func(s string) (*schemas.Value, bool) { return str(s), s != "" }
	switch key {
	case attrs.Host, "host":
		return nonEmpty(ev.Host)
	case attrs.App, "app", "service":
		return nonEmpty(ev.Service)
	case attrs.Message, "message":
		return str(ev.Message), true
	case attrs.Time, "time":
		return &schemas.Value{Kind: &schemas.Value_TimeUnixNano{TimeUnixNano: when}}, true
	case attrs.Stamp:
		return str(p.cfg().stampOf(when)), true
	case attrs.Loco:
		return integer(p.cfg().offsetAt(when)), true
	case attrs.Pid:
		i := indexField(ev.Fields, "pid")
		if i < 0 {
			return nil, false
		}
		switch v := ev.Fields[i].Value.GetKind().(type) {
		case *schemas.Value_Int:
			return integer(v.Int), true
		case *schemas.Value_Str:
			if n, err := strconv.ParseInt(v.Str, 10, 64); err == nil {
				return integer(n), true
			}
		}
		return nil, false
	case "id":
		return nonEmpty(ev.Id)
	case "class":
		return nonEmpty(ev.Class)
	case "source":
		return nonEmpty(ev.Source)
	case "peer":
		return nonEmpty(ev.Peer)
	}
	return nil, false
}

// eventTime is the event's own time, else its arrival time, in Unix ns.
func eventTime(ev *schemas.Event) int64 {
	if ev.TimeUnixNano != 0 {
		return ev.TimeUnixNano
	}
	return ev.ReceivedUnixNano
}

func (c *compiled) stampOf(ns int64) string {
	return string(c.stamp.FormatBuffer(make([]byte, 0, 32), time.Unix(0, ns).In(c.zone)))
}

func (c *compiled) offsetAt(ns int64) int64 {
	_, off := time.Unix(0, ns).In(c.zone).Zone()
	return int64(off)
}

// addError records text in R_error__, after what an earlier text there says.
func addError(ev *schemas.Event, text string) {
	if i := indexField(ev.Fields, attrs.RError); i >= 0 {
		if s, ok := ev.Fields[i].Value.GetKind().(*schemas.Value_Str); ok && s.Str != "" {
			text = s.Str + "; " + text
		}
		ev.Fields[i].Value = str(text)
		return
	}
	ev.Fields = append(ev.Fields, &schemas.Field{Key: attrs.RError, Value: str(text)})
}

func indexField(fs []*schemas.Field, key string) int {
	for i, f := range fs {
		if f.Key == key {
			return i
		}
	}
	return -1
}

func str(s string) *schemas.Value { return &schemas.Value{Kind: &schemas.Value_Str{Str: s}} }

func integer(n int64) *schemas.Value { return &schemas.Value{Kind: &schemas.Value_Int{Int: n}} }

// appendText appends v as R_message__ shows it.
func appendText(b []byte, v *schemas.Value) []byte {
	switch k := v.GetKind().(type) {
	case *schemas.Value_Str:
		return append(b, k.Str...)
	case *schemas.Value_List, *schemas.Value_Map:
		return appendJSON(b, v)
	}
	return appendScalar(b, v)
}

// appendScalar appends a non-container value as text; strings raw.
func appendScalar(b []byte, v *schemas.Value) []byte {
	switch k := v.GetKind().(type) {
	case *schemas.Value_Str:
		return append(b, k.Str...)
	case *schemas.Value_Int:
		return strconv.AppendInt(b, k.Int, 10)
	case *schemas.Value_Float:
		return strconv.AppendFloat(b, k.Float, 'g', -1, 64)
	case *schemas.Value_Bool:
		return strconv.AppendBool(b, k.Bool)
	case *schemas.Value_TimeUnixNano:
		return time.Unix(0, k.TimeUnixNano).UTC().AppendFormat(b, time.RFC3339Nano)
	case *schemas.Value_Bytes:
		return base64.StdEncoding.AppendEncode(b, k.Bytes)
	}
	return b // null
}

// appendJSON appends v as JSON: how a list or map shows in a text.
func appendJSON(b []byte, v *schemas.Value) []byte {
	switch k := v.GetKind().(type) {
	case *schemas.Value_List:
		b = append(b, '[')
		for i, x := range k.List.GetValues() {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSON(b, x)
		}
		return append(b, ']')
	case *schemas.Value_Map:
		b = append(b, '{')
		for i, f := range k.Map.GetFields() {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, f.Key)
			b = append(b, ':')
			b = appendJSON(b, f.Value)
		}
		return append(b, '}')
	case *schemas.Value_Int, *schemas.Value_Bool:
		return appendScalar(b, v)
	case *schemas.Value_Float:
		if math.IsNaN(k.Float) || math.IsInf(k.Float, 0) {
			return appendJSONString(b, strconv.FormatFloat(k.Float, 'g', -1, 64))
		}
		return appendScalar(b, v)
	case *schemas.Value_Str, *schemas.Value_TimeUnixNano, *schemas.Value_Bytes:
		return appendJSONString(b, string(appendScalar(nil, v)))
	}
	return append(b, "null"...)
}

// appendJSONString appends s quoted as a JSON string; invalid UTF-8
// becomes U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\t':
				b = append(b, '\\', 't')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

var _ stage.Processor = Processor{}
