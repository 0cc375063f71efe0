// Package filter compiles and runs the boolean expressions of herald's
// config (target filters, mask rules) over an event, with
// github.com/expr-lang/expr. Expressions are type-checked when the config
// is loaded, so comparing a string with a number is a config error, not a
// run-time surprise.
//
// The names an expression can use are the fields of Env: the envelope
// (id, class, certainty, host, service, message, source, peer, time,
// received, mask), the syslog header fields the classifier extracts
// (facility, severity, pri: -1 when the record has none; pid, msgid: "" when
// none) and fields, a map of every field of the event by key.
package filter

import (
	"fmt"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"

	"github.com/herald-router/herald/schemas"
)

// Env is what an expression sees of an event.
type Env struct {
	ID        string         `expr:"id"`
	Class     string         `expr:"class"`
	Certainty float64        `expr:"certainty"`
	Host      string         `expr:"host"`
	Service   string         `expr:"service"`
	Message   string         `expr:"message"`
	Source    string         `expr:"source"`
	Peer      string         `expr:"peer"`
	Time      time.Time      `expr:"time"`
	Received  time.Time      `expr:"received"`
	Mask      int            `expr:"mask"`
	Facility  int            `expr:"facility"`
	Severity  int            `expr:"severity"`
	Pri       int            `expr:"pri"`
	Pid       string         `expr:"pid"`
	MsgID     string         `expr:"msgid"`
	Fields    map[string]any `expr:"fields"`
}

// Program is a compiled expression.
type Program struct {
	src  string
	prog *vm.Program
}

// Compile type-checks src as a boolean expression over Env.
func Compile(src string) (*Program, error) {
	p, err := expr.Compile(src, expr.Env(Env{}), expr.AsBool())
	if err != nil {
		return nil, err
	}
	return &Program{src: src, prog: p}, nil
}

// String returns the source.
func (p *Program) String() string { return p.src }

// Match runs the expression on ev. An error (a field of the wrong type in
// fields, say) means the event cannot be judged: the caller dead-letters it.
func (p *Program) Match(ev *schemas.Event) (bool, error) {
	env := NewEnv(ev)
	out, err := expr.Run(p.prog, &env)
	if err != nil {
		return false, fmt.Errorf("filter %q: %w", p.src, err)
	}
	return out.(bool), nil
}

// NewEnv builds what an expression sees of ev.
func NewEnv(ev *schemas.Event) Env {
	e := Env{
		ID: ev.Id, Class: ev.Class, Certainty: float64(ev.Certainty), Host: ev.Host, Service: ev.Service,
		Message: ev.Message, Source: ev.Source, Peer: ev.Peer, Mask: int(ev.TargetMask),
		Received: time.Unix(0, ev.ReceivedUnixNano).UTC(), Facility: -1, Severity: -1, Pri: -1,
		Fields: make(map[string]any, len(ev.Fields)),
	}
	if ev.TimeUnixNano != 0 {
		e.Time = time.Unix(0, ev.TimeUnixNano).UTC()
	} else {
		e.Time = e.Received
	}
	for _, f := range ev.Fields {
		v := Value(f.Value)
		e.Fields[f.Key] = v
		switch f.Key {
		case "facility", "severity", "pri":
			if i, ok := v.(int); ok {
				switch f.Key {
				case "facility":
					e.Facility = i
				case "severity":
					e.Severity = i
				default:
					e.Pri = i
				}
			}
		case "pid":
			e.Pid = fmt.Sprint(v)
		case "msgid":
			if s, ok := v.(string); ok {
				e.MsgID = s
			}
		}
	}
	return e
}

// Value converts a typed event value to the plain Go value expressions use.
func Value(v *schemas.Value) any {
	switch k := v.GetKind().(type) {
	case *schemas.Value_Str:
		return k.Str
	case *schemas.Value_Int:
		return int(k.Int)
	case *schemas.Value_Float:
		return k.Float
	case *schemas.Value_Bool:
		return k.Bool
	case *schemas.Value_TimeUnixNano:
		return time.Unix(0, k.TimeUnixNano).UTC()
	case *schemas.Value_Bytes:
		return string(k.Bytes)
	case *schemas.Value_List:
		out := make([]any, len(k.List.GetValues()))
		for i, x := range k.List.GetValues() {
			out[i] = Value(x)
		}
		return out
	case *schemas.Value_Map:
		out := make(map[string]any, len(k.Map.GetFields()))
		for _, f := range k.Map.GetFields() {
			out[f.Key] = Value(f.Value)
		}
		return out
	}
	return nil
}
