// Package formattest reads back what the text formats of package format
// wrote, strictly, so tests can prove that a format round-trips: a sink's
// sinktest harness reads its file with these.
package formattest

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ReadCSV parses RFC 4180 records strictly (a quote inside an unquoted
// field is an error; CRLF inside quotes is data, which encoding/csv would
// fold to LF), skipping "#" comment lines (launch markers). Every record
// must end with a newline.
func ReadCSV(data []byte) ([][]string, error) {
	var recs [][]string
	var rec []string
	var cell []byte
	i := 0
	for i < len(data) {
		if len(rec) == 0 && data[i] == '#' {
			j := bytes.IndexByte(data[i:], '\n')
			if j < 0 {
				return recs, fmt.Errorf("comment line without a newline at byte %d", i)
			}
			i += j + 1
			continue
		}
		if data[i] == '"' {
			i++
			for {
				if i >= len(data) {
					return recs, fmt.Errorf("unterminated quoted field")
				}
				if data[i] == '"' {
					if i+1 < len(data) && data[i+1] == '"' {
						cell = append(cell, '"')
						i += 2
						continue
					}
					i++
					break
				}
				cell = append(cell, data[i])
				i++
			}
		} else {
			for i < len(data) && data[i] != ',' && data[i] != '\n' {
				if data[i] == '"' || data[i] == '\r' {
					return recs, fmt.Errorf("%q in an unquoted field at byte %d", data[i], i)
				}
				cell = append(cell, data[i])
				i++
			}
		}
		if i >= len(data) {
			return recs, fmt.Errorf("the last record has no newline")
		}
		rec = append(rec, string(cell))
		cell = cell[:0]
		switch data[i] {
		case '\n':
			recs = append(recs, rec)
			rec = nil
		case ',':
		default:
			return recs, fmt.Errorf("want , or newline after a quoted field at byte %d, got %q", i, data[i])
		}
		i++
	}
	return recs, nil
}

// Event is one <event> of the xml format read back: envelope elements by
// name, fields in order by their name attribute, base64 values decoded.
type Event struct {
	Envelope map[string]string
	Fields   [][2]string
}

// ReadXML parses a file of the xml format: a complete document, or one
// whose footer is not written yet (a writer still has it open), in which
// case every complete event is returned.
func ReadXML(data []byte) ([]Event, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	var out []Event
	var cur *Event
	depth := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			var se *xml.SyntaxError
			if errors.As(err, &se) && strings.Contains(se.Msg, "unexpected EOF") && depth <= 1 && cur == nil {
				return out, nil // no footer yet
			}
			return out, fmt.Errorf("not well-formed XML: %w", err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if el.Name.Local == "event" {
				depth++
				cur = &Event{Envelope: map[string]string{}}
				continue
			}
			if cur == nil {
				depth++
				continue
			}
			var v struct {
				Text string `xml:",chardata"`
			}
			if err := d.DecodeElement(&v, &el); err != nil {
				return out, fmt.Errorf("element %s: %w", el.Name.Local, err)
			}
			val, name := v.Text, el.Name.Local
			for _, a := range el.Attr {
				switch a.Name.Local {
				case "encoding":
					if a.Value != "base64" {
						return out, fmt.Errorf("element %s: unknown encoding %q", name, a.Value)
					}
					b, err := base64.StdEncoding.DecodeString(val)
					if err != nil {
						return out, fmt.Errorf("element %s: %w", name, err)
					}
					val = string(b)
				case "name":
					name = a.Value
				}
			}
			if el.Name.Local == "field" {
				cur.Fields = append(cur.Fields, [2]string{name, val})
			} else {
				cur.Envelope[name] = val
			}
		case xml.EndElement:
			depth--
			if el.Name.Local == "event" && cur != nil {
				out = append(out, *cur)
				cur = nil
			}
		}
	}
}
