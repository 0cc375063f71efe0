package xmpp

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/herald-router/herald/schemas"
)

// The event payload of a PubSub item: the whole event, typed, in herald's
// namespace, so that a subscriber gets exactly what herald got.
//
//	<event xmlns='urn:herald:event:0' id='01J…'>
//	  <time>2026-11-26T05:59:59Z</time>          the envelope, as in the JSON form
//	  <received>…</received> <host>…</host> <service>…</service> <class>…</class>
//	  <certainty>1</certainty> <source>…</source> <peer>…</peer> <target-mask>4</target-mask>
//	  <message>…</message>
//	  <raw encoding='base64'>…</raw>
//	  <field key='seq' type='int'>7</field>      one per field, in event order
//	  <field key='tags' type='list'><value type='str'>a</value>…</field>
//	  <field key='sd' type='map'><field key='x' type='bool'>true</field>…</field>
//	</event>
//
// Field types: str, int, float (Go's shortest form; NaN, +Inf, -Inf),
// bool, time (RFC 3339 with nanoseconds, UTC), bytes (base64), list, map,
// null. Empty envelope items are left out (the message never is). Text
// that XML 1.0 cannot carry (invalid UTF-8, C0 controls other than tab,
// LF and CR, U+FFFE, U+FFFF) is written whole as base64 of its exact bytes
// with encoding='base64' (so is text holding CR: a server re-serializing
// the item writes it raw, and XML parsers turn a raw CR into LF), and a
// field key that cannot be carried as it is (tab and LF included, which
// attributes turn into spaces) goes into key-base64 instead of key:
// nothing is lost or changed.
// DecodeEvent reads it back.

// appendPayload appends ev's payload element.
func appendPayload(b []byte, ev *schemas.Event) []byte {
	b = append(b, "<event xmlns='"+Namespace+"' id='"...)
	b = appendEscaped(b, ev.Id, true)
	b = append(b, "'>"...)
	if ev.TimeUnixNano != 0 {
		b = appendTimeElem(b, "time", ev.TimeUnixNano)
	}
	if ev.ReceivedUnixNano != 0 {
		b = appendTimeElem(b, "received", ev.ReceivedUnixNano)
	}
	b = appendTextElem(b, "host", ev.Host, false)
	b = appendTextElem(b, "service", ev.Service, false)
	b = appendTextElem(b, "class", ev.Class, false)
	if ev.Class != "" {
		b = append(b, "<certainty>"...)
		b = strconv.AppendFloat(b, float64(ev.Certainty), 'g', -1, 32)
		b = append(b, "</certainty>"...)
	}
	b = appendTextElem(b, "source", ev.Source, false)
	b = appendTextElem(b, "peer", ev.Peer, false)
	if ev.TargetMask != 0 {
		b = append(b, "<target-mask>"...)
		b = strconv.AppendUint(b, ev.TargetMask, 10)
		b = append(b, "</target-mask>"...)
	}
	b = appendTextElem(b, "message", ev.Message, true)
	if len(ev.Raw) > 0 {
		b = append(b, "<raw encoding='base64'>"...)
		b = base64.StdEncoding.AppendEncode(b, ev.Raw)
		b = append(b, "</raw>"...)
	}
	for _, f := range ev.Fields {
		b = appendField(b, "field", f.Key, true, f.Value)
	}
	return append(b, "</event>"...)
}

func appendTimeElem(b []byte, name string, ns int64) []byte {
	b = append(b, '<')
	b = append(b, name...)
	b = append(b, '>')
	b = time.Unix(0, ns).UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, "</"...)
	b = append(b, name...)
	return append(b, '>')
}

// appendTextElem writes <name>s</name>, base64 when XML cannot carry s;
// an empty s is left out unless always.
func appendTextElem(b []byte, name, s string, always bool) []byte {
	if s == "" && !always {
		return b
	}
	b = append(b, '<')
	b = append(b, name...)
	b = appendText(b, s)
	b = append(b, "</"...)
	b = append(b, name...)
	return append(b, '>')
}

// survives reports whether s comes out of a server exactly as it went in:
// XML can carry it, and it holds no CR. A server parses the stanza and
// writes it out again for the subscribers, so CR sent as &#13; leaves it
// raw, and the subscriber's parser turns that into LF.
func survives(s string) bool { return carries(s) && strings.IndexByte(s, '\r') < 0 }

// appendText closes a start tag and writes s as its content.
func appendText(b []byte, s string) []byte {
	if !survives(s) {
		b = append(b, " encoding='base64'>"...)
		return base64.StdEncoding.AppendEncode(b, []byte(s))
	}
	b = append(b, '>')
	return appendEscaped(b, s, false)
}

// appendField writes one field (elem "field", with its key) or list value
// (elem "value", no key).
func appendField(b []byte, elem, key string, keyed bool, v *schemas.Value) []byte {
	b = append(b, '<')
	b = append(b, elem...)
	if keyed {
		if survives(key) && !strings.ContainsAny(key, "\t\n") { // attribute values turn tab and LF into spaces
			b = append(b, " key='"...)
			b = appendEscaped(b, key, true)
		} else {
			b = append(b, " key-base64='"...)
			b = base64.StdEncoding.AppendEncode(b, []byte(key))
		}
		b = append(b, '\'')
	}
	b = append(b, " type='"...)
	switch k := v.GetKind().(type) {
	case *schemas.Value_Str:
		b = append(b, "str'"...)
		b = appendText(b, k.Str)
	case *schemas.Value_Int:
		b = append(b, "int'>"...)
		b = strconv.AppendInt(b, k.Int, 10)
	case *schemas.Value_Float:
		b = append(b, "float'>"...)
		b = strconv.AppendFloat(b, k.Float, 'g', -1, 64)
	case *schemas.Value_Bool:
		b = append(b, "bool'>"...)
		b = strconv.AppendBool(b, k.Bool)
	case *schemas.Value_TimeUnixNano:
		b = append(b, "time'>"...)
		b = time.Unix(0, k.TimeUnixNano).UTC().AppendFormat(b, time.RFC3339Nano)
	case *schemas.Value_Bytes:
		b = append(b, "bytes' encoding='base64'>"...)
		b = base64.StdEncoding.AppendEncode(b, k.Bytes)
	case *schemas.Value_List:
		b = append(b, "list'>"...)
		for _, x := range k.List.GetValues() {
			b = appendField(b, "value", "", false, x)
		}
	case *schemas.Value_Map:
		b = append(b, "map'>"...)
		for _, f := range k.Map.GetFields() {
			b = appendField(b, "field", f.Key, true, f.Value)
		}
	default:
		b = append(b, "null'>"...)
	}
	b = append(b, "</"...)
	b = append(b, elem...)
	return append(b, '>')
}

// DecodeEvent reads an event payload (the <event> element of a PubSub
// item) back into an event.
func DecodeEvent(data []byte) (*schemas.Event, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("no event element: %w", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if se.Name.Space != Namespace || se.Name.Local != "event" {
			return nil, fmt.Errorf("want an event element in %s, got %s %s", Namespace, se.Name.Space, se.Name.Local)
		}
		ev := &schemas.Event{Id: attr(se, "id")}
		if err := decodeEnvelope(d, ev); err != nil {
			return nil, err
		}
		return ev, nil
	}
}

func attr(se xml.StartElement, name string) string {
	for _, a := range se.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// elemText reads the content of the element se started, decoding base64
// when it says so.
func elemText(d *xml.Decoder, se xml.StartElement) (string, error) {
	var s string
	if err := d.DecodeElement(&s, &se); err != nil {
		return "", err
	}
	if attr(se, "encoding") == "base64" {
		raw, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return "", fmt.Errorf("%s: %w", se.Name.Local, err)
		}
		return string(raw), nil
	}
	return s, nil
}

func parseTime(s string) (int64, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, err
	}
	return t.UnixNano(), nil
}

func decodeEnvelope(d *xml.Decoder, ev *schemas.Event) error {
	for {
		tok, err := d.Token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.EndElement:
			return nil
		case xml.StartElement:
			if t.Name.Local == "field" {
				f, err := decodeField(d, t)
				if err != nil {
					return err
				}
				ev.Fields = append(ev.Fields, f)
				continue
			}
			s, err := elemText(d, t)
			if err != nil {
				return err
			}
			switch t.Name.Local {
			case "time":
				ev.TimeUnixNano, err = parseTime(s)
			case "received":
				ev.ReceivedUnixNano, err = parseTime(s)
			case "host":
				ev.Host = s
			case "service":
				ev.Service = s
			case "class":
				ev.Class = s
			case "certainty":
				var f float64
				f, err = strconv.ParseFloat(s, 32)
				ev.Certainty = float32(f)
			case "source":
				ev.Source = s
			case "peer":
				ev.Peer = s
			case "target-mask":
				ev.TargetMask, err = strconv.ParseUint(s, 10, 64)
			case "message":
				ev.Message = s
			case "raw":
				ev.Raw = []byte(s)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", t.Name.Local, err)
			}
		}
	}
}

func decodeField(d *xml.Decoder, se xml.StartElement) (*schemas.Field, error) {
	key := attr(se, "key")
	if kb := attr(se, "key-base64"); kb != "" {
		raw, err := base64.StdEncoding.DecodeString(kb)
		if err != nil {
			return nil, fmt.Errorf("field key: %w", err)
		}
		key = string(raw)
	}
	v, err := decodeValue(d, se)
	if err != nil {
		return nil, fmt.Errorf("field %q: %w", key, err)
	}
	return &schemas.Field{Key: key, Value: v}, nil
}

func decodeValue(d *xml.Decoder, se xml.StartElement) (*schemas.Value, error) {
	typ := attr(se, "type")
	switch typ {
	case "list", "map":
		var out []any
		for {
			tok, err := d.Token()
			if err != nil {
				return nil, err
			}
			if _, end := tok.(xml.EndElement); end {
				break
			}
			c, ok := tok.(xml.StartElement)
			if !ok {
				continue
			}
			if typ == "list" {
				v, err := decodeValue(d, c)
				if err != nil {
					return nil, err
				}
				out = append(out, v)
			} else {
				f, err := decodeField(d, c)
				if err != nil {
					return nil, err
				}
				out = append(out, f)
			}
		}
		if typ == "list" {
			l := &schemas.List{}
			for _, x := range out {
				l.Values = append(l.Values, x.(*schemas.Value))
			}
			return &schemas.Value{Kind: &schemas.Value_List{List: l}}, nil
		}
		m := &schemas.Map{}
		for _, x := range out {
			m.Fields = append(m.Fields, x.(*schemas.Field))
		}
		return &schemas.Value{Kind: &schemas.Value_Map{Map: m}}, nil
	}
	s, err := elemText(d, se)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "str":
		return &schemas.Value{Kind: &schemas.Value_Str{Str: s}}, nil
	case "int":
		n, err := strconv.ParseInt(s, 10, 64)
		return &schemas.Value{Kind: &schemas.Value_Int{Int: n}}, err
	case "float":
		f, err := strconv.ParseFloat(s, 64)
		return &schemas.Value{Kind: &schemas.Value_Float{Float: f}}, err
	case "bool":
		v, err := strconv.ParseBool(s)
		return &schemas.Value{Kind: &schemas.Value_Bool{Bool: v}}, err
	case "time":
		ns, err := parseTime(s)
		return &schemas.Value{Kind: &schemas.Value_TimeUnixNano{TimeUnixNano: ns}}, err
	case "bytes":
		return &schemas.Value{Kind: &schemas.Value_Bytes{Bytes: []byte(s)}}, nil
	case "null":
		return &schemas.Value{}, nil
	}
	return nil, errors.New("unknown type " + strconv.Quote(typ))
}
