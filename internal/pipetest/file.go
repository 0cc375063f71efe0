package pipetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// DefaultReceived is the arrival time of inputs that name none, fixed so
// that ids, R_time__ and year inference give the same answer every run.
var DefaultReceived = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// File is a test file.
type File struct {
	// Config is the path of the config under test, relative to the test
	// file's folder. Required.
	Config string `yaml:"config"`
	// Received is the default arrival time (RFC 3339) of every input.
	// Default DefaultReceived.
	Received string `yaml:"received"`
	// Tests are the cases, run in order.
	Tests []Case `yaml:"tests"`

	// Path is where the file was read from; ConfigPath the config's path
	// resolved against its folder.
	Path       string `yaml:"-"`
	ConfigPath string `yaml:"-"`
	received   time.Time
}

// Case is one input and what must become of it.
type Case struct {
	// Name says what the case shows, as a sentence. Required.
	Name   string `yaml:"name"`
	Input  Input  `yaml:"input"`
	Expect Expect `yaml:"expect"`

	// Line is the case's line in the file, for messages.
	Line int `yaml:"-"`
}

// Input is one record: a raw line from a receiver, or an application's
// JSON event.
type Input struct {
	// Receiver names the receiver the line came from. Default: the
	// config's only receiver.
	Receiver string `yaml:"receiver"`
	// Line is the raw record, as the receiver read it.
	Line *string `yaml:"line"`
	// Event is an application's JSON event: JSON text or a YAML mapping.
	Event yaml.Node `yaml:"event"`
	// Class is the class of the subject an event was published on
	// (herald.events.<class>). Default app.
	Class string `yaml:"class"`
	// Peer is the sender's address. Default none.
	Peer string `yaml:"peer"`
	// Received is the arrival time (RFC 3339). Default: the file's.
	Received string `yaml:"received"`
}

// Expect lists what is checked; a nil or empty entry is not checked.
type Expect struct {
	ID        *string  `yaml:"id"`
	Class     *string  `yaml:"class"`
	Certainty *float64 `yaml:"certainty"`
	Host      *string  `yaml:"host"`
	Service   *string  `yaml:"service"`
	Message   *string  `yaml:"message"`
	// Time is the event's own time, RFC 3339.
	Time *string `yaml:"time"`
	// Fields are checked by key; others may be present.
	Fields yaml.Node `yaml:"fields"`
	// NoFields must be absent.
	NoFields []string `yaml:"no_fields"`
	// Targets is the exact set of targets chosen; [] for none.
	Targets *[]string `yaml:"targets"`
	// DeadLettered is the exact set of targets whose copy the router
	// dead-letters because their filter cannot judge the event ("*": the
	// whole event, because a rule cannot judge it). Unexpected dead
	// letters always fail a case.
	DeadLettered []string `yaml:"dead_lettered"`
	// Outputs maps a sink's name to the record it would write.
	Outputs map[string]string `yaml:"outputs"`
}

// Load reads and checks a test file. Unknown keys are errors, as in a
// config file.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read test file: %w", err)
	}
	return Parse(path, data)
}

// Parse is Load for bytes already read; path names them in errors and
// gives the folder the config path resolves against.
func Parse(path string, data []byte) (*File, error) {
	f := &File{Path: path}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty test file", path)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	// A second pass over the node tree gives each case its line.
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err == nil && len(root.Content) == 1 {
		doc := root.Content[0]
		for i := 0; i+1 < len(doc.Content); i += 2 {
			if doc.Content[i].Value == "tests" && doc.Content[i+1].Kind == yaml.SequenceNode {
				for j, n := range doc.Content[i+1].Content {
					if j < len(f.Tests) {
						f.Tests[j].Line = n.Line
					}
				}
			}
		}
	}
	if f.Config == "" {
		return nil, fmt.Errorf("%s: config: required: the path of the config under test", path)
	}
	f.ConfigPath = f.Config
	if !filepath.IsAbs(f.ConfigPath) {
		f.ConfigPath = filepath.Join(filepath.Dir(path), f.ConfigPath)
	}
	f.received = DefaultReceived
	if f.Received != "" {
		var err error
		if f.received, err = time.Parse(time.RFC3339Nano, f.Received); err != nil {
			return nil, fmt.Errorf("%s: received: want an RFC 3339 time: %w", path, err)
		}
	}
	if len(f.Tests) == 0 {
		return nil, fmt.Errorf("%s: tests: no cases", path)
	}
	for i, c := range f.Tests {
		where := fmt.Sprintf("%s:%d: tests[%d]", path, c.Line, i)
		if c.Name == "" {
			return nil, fmt.Errorf("%s: name: required: what the case shows", where)
		}
		hasEvent := c.Input.Event.Kind != 0
		switch {
		case c.Input.Line == nil && !hasEvent:
			return nil, fmt.Errorf("%s: input: want line (a raw record) or event (an application's JSON event)", where)
		case c.Input.Line != nil && hasEvent:
			return nil, fmt.Errorf("%s: input: line and event exclude each other", where)
		case hasEvent && c.Input.Receiver != "":
			return nil, fmt.Errorf("%s: input.receiver: only for a line; an event comes from NATS", where)
		case c.Input.Line != nil && c.Input.Class != "":
			return nil, fmt.Errorf("%s: input.class: only for an event; a line is classified", where)
		}
		if c.Input.Received != "" {
			if _, err := time.Parse(time.RFC3339Nano, c.Input.Received); err != nil {
				return nil, fmt.Errorf("%s: input.received: want an RFC 3339 time: %w", where, err)
			}
		}
		if k := c.Expect.Fields.Kind; k != 0 && k != yaml.MappingNode {
			return nil, fmt.Errorf("%s: expect.fields: want a mapping of field keys to values", where)
		}
	}
	return f, nil
}

// receivedOf is the arrival time of c's input.
func (f *File) receivedOf(c *Case) time.Time {
	if c.Input.Received != "" {
		t, _ := time.Parse(time.RFC3339Nano, c.Input.Received) // checked by Parse
		return t
	}
	return f.received
}

// nodeJSON writes a YAML node as JSON, keeping the order of mappings (the
// order of an event's fields is part of the event).
func nodeJSON(b []byte, n *yaml.Node) ([]byte, error) {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) != 1 {
			return nil, fmt.Errorf("line %d: empty document", n.Line)
		}
		return nodeJSON(b, n.Content[0])
	case yaml.AliasNode:
		return nodeJSON(b, n.Alias)
	case yaml.MappingNode:
		b = append(b, '{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			if i > 0 {
				b = append(b, ',')
			}
			k, err := json.Marshal(n.Content[i].Value)
			if err != nil {
				return nil, err
			}
			b = append(append(b, k...), ':')
			if b, err = nodeJSON(b, n.Content[i+1]); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	case yaml.SequenceNode:
		b = append(b, '[')
		for i, c := range n.Content {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = nodeJSON(b, c); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return append(b, "null"...), nil
		case "!!bool":
			var v bool
			if err := n.Decode(&v); err != nil {
				return nil, err
			}
			return strconv.AppendBool(b, v), nil
		case "!!int", "!!float":
			var v any
			if err := n.Decode(&v); err != nil {
				return nil, err
			}
			j, err := json.Marshal(v)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n.Line, err)
			}
			return append(b, j...), nil
		default:
			j, err := json.Marshal(n.Value)
			if err != nil {
				return nil, err
			}
			return append(b, j...), nil
		}
	}
	return nil, fmt.Errorf("line %d: unsupported YAML node", n.Line)
}
