package bus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-router/herald/schemas"
)

// ErrMalformed marks input that can never be processed: it is dead-lettered
// with the reason and never retried.
var ErrMalformed = errors.New("malformed message")

// Decode returns the batch a stage received. Messages herald made carry a
// protobuf Batch; anything else on herald.events.* is an application's JSON
// event (schemas/event.schema.json), one object or an array of them.
func Decode(msg jetstream.Msg) (*schemas.Batch, error) {
	if msg.Headers().Get(HeaderEncoding) == EncodingBatch {
		// UnmarshalVTUnsafe: the event's strings and bytes point into the
		// message's data instead of being copied out of it; nats.go gives
		// every message its own buffer and no stage writes to it. About four
		// times cheaper than proto.Unmarshal, which was the sink's largest
		// cost. Strings are not checked for UTF-8 here: every producer of a
		// protobuf batch (classifier, JSON intake, ELAPI) makes them valid.
		b := &schemas.Batch{}
		if err := b.UnmarshalVTUnsafe(msg.Data()); err != nil {
			return nil, fmt.Errorf("%w: protobuf batch: %v", ErrMalformed, err)
		}
		return b, nil
	}
	id := msg.Headers().Get(jetstream.MsgIDHeader)
	if id == "" {
		md, err := msg.Metadata()
		if err != nil {
			return nil, fmt.Errorf("message metadata: %w", err)
		}
		id = md.Stream + "." + strconv.FormatUint(md.Sequence.Stream, 10)
	}
	class := strings.TrimPrefix(msg.Subject(), SubjectEventsPrefix)
	if class == msg.Subject() || class == "" {
		class = "app"
	}
	events, err := ParseJSONEvents(msg.Data(), class, time.Now())
	if err != nil {
		return nil, err
	}
	return &schemas.Batch{Id: "app." + id, Events: events}, nil
}

// Envelope keys of the JSON event form; every other key is a field, kept in
// the order the application wrote it.
const (
	jsonID         = "id"
	jsonTime       = "time"
	jsonHost       = "host"
	jsonService    = "service"
	jsonMessage    = "message"
	jsonClass      = "class"
	jsonTargetMask = "target_mask"
	jsonTrack      = "track"
)

// SourceNATS is the source of events applications published onto NATS.
const SourceNATS = "nats"

// DefaultTargetMask is the mask of events that name none: the log target.
const DefaultTargetMask = 4

// ParseJSONEvents reads one JSON event object or an array of them. received
// stamps each event's arrival.
func ParseJSONEvents(data []byte, class string, received time.Time) ([]*schemas.Event, error) {
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: JSON event is not valid UTF-8", ErrMalformed)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%w: JSON event: %v", ErrMalformed, err)
	}
	var events []*schemas.Event
	switch tok {
	case json.Delim('{'):
		ev, err := parseEventObject(dec, class, received)
		if err != nil {
			return nil, err
		}
		events = append(events, ev)
	case json.Delim('['):
		for dec.More() {
			t, err := dec.Token()
			if err != nil {
				return nil, fmt.Errorf("%w: JSON event %d: %v", ErrMalformed, len(events), err)
			}
			if t != json.Delim('{') {
				return nil, fmt.Errorf("%w: JSON event %d: want an object", ErrMalformed, len(events))
			}
			ev, err := parseEventObject(dec, class, received)
			if err != nil {
				return nil, fmt.Errorf("event %d: %w", len(events), err)
			}
			events = append(events, ev)
		}
		if _, err := dec.Token(); err != nil {
			return nil, fmt.Errorf("%w: JSON events: %v", ErrMalformed, err)
		}
	default:
		return nil, fmt.Errorf("%w: JSON event: want an object or an array of objects", ErrMalformed)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: JSON event: data after the end", ErrMalformed)
	}
	if len(events) == 0 {
		return nil, fmt.Errorf("%w: JSON events: empty array", ErrMalformed)
	}
	return events, nil
}

func parseEventObject(dec *json.Decoder, class string, received time.Time) (*schemas.Event, error) {
	ev := &schemas.Event{
		Source:           SourceNATS,
		Class:            class,
		Certainty:        1,
		TargetMask:       DefaultTargetMask,
		ReceivedUnixNano: received.UnixNano(),
	}
	seen := map[string]bool{}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: JSON event: %v", ErrMalformed, err)
		}
		key := kt.(string)
		if seen[key] {
			return nil, fmt.Errorf("%w: JSON event: key %q given twice", ErrMalformed, key)
		}
		seen[key] = true
		v, err := parseValue(dec)
		if err != nil {
			return nil, fmt.Errorf("%w: JSON event key %q: %v", ErrMalformed, key, err)
		}
		if err := setEnvelope(ev, key, v); err != nil {
			return nil, fmt.Errorf("%w: JSON event key %q: %v", ErrMalformed, key, err)
		}
	}
	if _, err := dec.Token(); err != nil { // closing }
		return nil, fmt.Errorf("%w: JSON event: %v", ErrMalformed, err)
	}
	return ev, nil
}

func setEnvelope(ev *schemas.Event, key string, v *schemas.Value) error {
	str := func() (string, error) {
		s, ok := v.GetKind().(*schemas.Value_Str)
		if !ok {
			return "", errors.New("want a string")
		}
		return s.Str, nil
	}
	var err error
	switch key {
	case jsonID:
		ev.Id, err = str()
	case jsonHost:
		ev.Host, err = str()
	case jsonService:
		ev.Service, err = str()
	case jsonMessage:
		ev.Message, err = str()
	case jsonClass:
		var c string
		if c, err = str(); err == nil && c != "" {
			ev.Class = c
		}
	case jsonTrack:
		ev.Track, err = str()
	case jsonTargetMask:
		i, ok := v.GetKind().(*schemas.Value_Int)
		if !ok || i.Int < 0 {
			return errors.New("want a non-negative integer")
		}
		ev.TargetMask = uint64(i.Int)
	case jsonTime:
		switch k := v.GetKind().(type) {
		case *schemas.Value_Str:
			t, perr := time.Parse(time.RFC3339Nano, k.Str)
			if perr != nil {
				return errors.New("want RFC 3339 time or Unix seconds")
			}
			ev.TimeUnixNano = t.UnixNano()
		case *schemas.Value_Int:
			ev.TimeUnixNano = k.Int * int64(time.Second)
		case *schemas.Value_Float:
			ev.TimeUnixNano = int64(k.Float * float64(time.Second))
		default:
			return errors.New("want RFC 3339 time or Unix seconds")
		}
	default:
		ev.Fields = append(ev.Fields, &schemas.Field{Key: key, Value: v})
	}
	return err
}

func parseValue(dec *json.Decoder) (*schemas.Value, error) {
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch x := t.(type) {
	case nil:
		return &schemas.Value{}, nil
	case string:
		return &schemas.Value{Kind: &schemas.Value_Str{Str: x}}, nil
	case bool:
		return &schemas.Value{Kind: &schemas.Value_Bool{Bool: x}}, nil
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return &schemas.Value{Kind: &schemas.Value_Int{Int: i}}, nil
		}
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil || math.IsInf(f, 0) {
			return nil, fmt.Errorf("number %s out of range", x)
		}
		return &schemas.Value{Kind: &schemas.Value_Float{Float: f}}, nil
	case json.Delim:
		if x == '[' {
			l := &schemas.List{}
			for dec.More() {
				v, err := parseValue(dec)
				if err != nil {
					return nil, err
				}
				l.Values = append(l.Values, v)
			}
			_, err := dec.Token()
			return &schemas.Value{Kind: &schemas.Value_List{List: l}}, err
		}
		m := &schemas.Map{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			v, err := parseValue(dec)
			if err != nil {
				return nil, err
			}
			m.Fields = append(m.Fields, &schemas.Field{Key: kt.(string), Value: v})
		}
		_, err := dec.Token()
		return &schemas.Value{Kind: &schemas.Value_Map{Map: m}}, err
	}
	return nil, fmt.Errorf("unexpected %v", t)
}
