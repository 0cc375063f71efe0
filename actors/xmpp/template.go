package xmpp

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/herald-router/herald/schemas"
)

// The body template. Its syntax is the file sink's template format
// (package format): %(name) is an envelope item (id, time, received,
// host, service, class, certainty, source, peer, message) or a field's
// key (a field whose key is an envelope name is written _name), %% is a
// percent sign, any other % is an error. format's template is not reused
// because it renders for one-line records: it escapes newlines and tabs
// as \n and \t and ends each record with a newline, while a message body
// keeps the text as it is (the stanza writer escapes it for XML).

// rMessage is the resolver's rendered message, the default body.
const rMessage = "R_message__"

var envelopeNames = map[string]bool{
	"id": true, "time": true, "received": true, "host": true, "service": true, "class": true,
	"certainty": true, "source": true, "peer": true, "message": true,
}

type tplSegment struct {
	text string
	name string // "" for the last segment
	env  bool   // name is an envelope item
}

// template is a compiled body template; nil renders the default body.
type template struct{ segs []tplSegment }

func compileTemplate(s string) (*template, error) {
	if s == "" {
		return nil, nil
	}
	t := &template{}
	var text strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			text.WriteByte(c)
			continue
		}
		if i+1 < len(s) && s[i+1] == '%' {
			text.WriteByte('%')
			i++
			continue
		}
		if i+1 >= len(s) || s[i+1] != '(' {
			return nil, fmt.Errorf("%% at byte %d starts no placeholder: write %%(name), or %%%% for a percent sign", i)
		}
		end := strings.IndexByte(s[i+2:], ')')
		if end < 0 {
			return nil, fmt.Errorf("%%( at byte %d is not closed by )", i)
		}
		name := s[i+2 : i+2+end]
		if name == "" {
			return nil, fmt.Errorf("empty placeholder at byte %d", i)
		}
		seg := tplSegment{text: text.String(), name: name, env: envelopeNames[name]}
		if len(name) > 1 && name[0] == '_' && envelopeNames[name[1:]] {
			seg.name = name[1:]
		}
		t.segs = append(t.segs, seg)
		text.Reset()
		i += 2 + end
	}
	t.segs = append(t.segs, tplSegment{text: text.String()})
	return t, nil
}

// render is the body of ev: the template filled in, or by default the
// resolved message (R_message__) when the event has one as text, else the
// message.
func (t *template) render(ev *schemas.Event) string {
	if t == nil {
		for _, f := range ev.Fields {
			if f.Key == rMessage {
				if s, ok := f.Value.GetKind().(*schemas.Value_Str); ok {
					return s.Str
				}
			}
		}
		return ev.Message
	}
	var b strings.Builder
	for _, sg := range t.segs {
		b.WriteString(sg.text)
		if sg.name == "" {
			continue
		}
		if sg.env {
			b.WriteString(envelopeText(ev, sg.name))
			continue
		}
		for _, f := range ev.Fields {
			if f.Key == sg.name {
				b.WriteString(valueText(f.Value))
				break
			}
		}
	}
	return b.String()
}

func envelopeText(ev *schemas.Event, name string) string {
	switch name {
	case "id":
		return ev.Id
	case "time", "received":
		ns := ev.TimeUnixNano
		if name == "received" {
			ns = ev.ReceivedUnixNano
		}
		if ns == 0 {
			return ""
		}
		return time.Unix(0, ns).UTC().Format(time.RFC3339Nano)
	case "host":
		return ev.Host
	case "service":
		return ev.Service
	case "class":
		return ev.Class
	case "certainty":
		if ev.Class == "" {
			return ""
		}
		return strconv.FormatFloat(float64(ev.Certainty), 'g', 3, 32)
	case "source":
		return ev.Source
	case "peer":
		return ev.Peer
	case "message":
		return ev.Message
	}
	return ""
}

// valueText is a field's value as text: strings as they are, numbers and
// times as in the JSON form, bytes as base64, lists and maps as
// [a, b] and {k: v}.
func valueText(v *schemas.Value) string {
	switch k := v.GetKind().(type) {
	case *schemas.Value_Str:
		return k.Str
	case *schemas.Value_Int:
		return strconv.FormatInt(k.Int, 10)
	case *schemas.Value_Float:
		return strconv.FormatFloat(k.Float, 'g', -1, 64)
	case *schemas.Value_Bool:
		return strconv.FormatBool(k.Bool)
	case *schemas.Value_TimeUnixNano:
		return time.Unix(0, k.TimeUnixNano).UTC().Format(time.RFC3339Nano)
	case *schemas.Value_Bytes:
		return base64.StdEncoding.EncodeToString(k.Bytes)
	case *schemas.Value_List:
		parts := make([]string, len(k.List.GetValues()))
		for i, x := range k.List.GetValues() {
			parts[i] = valueText(x)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case *schemas.Value_Map:
		parts := make([]string, len(k.Map.GetFields()))
		for i, f := range k.Map.GetFields() {
			parts[i] = f.Key + ": " + valueText(f.Value)
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return ""
}
