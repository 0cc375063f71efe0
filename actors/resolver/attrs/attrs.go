// Package attrs is the vocabulary of herald's event model that both the
// resolver and config validation need: the reserved and resolvable
// attribute names, the strftime dialect of R_stamp__, time zones, and the
// %(key) text syntax of R_message__. It imports nothing of herald, so that
// package config can check a template at load time with exactly the rules
// the resolver applies at run time, without an import cycle.
package attrs

import (
	"fmt"
	"strings"
	"time"
	_ "time/tzdata" // zone names resolve the same on every machine, with or without a zoneinfo database

	"github.com/lestrrat-go/strftime"
)

// Reserved attributes: herald's names for parts of the envelope and values
// derived from it, with fixed types. They are read-only: the resolver does
// not write them into an event's fields, it answers them when a %(key)
// placeholder (or a filter) asks. An application field may not be named
// like one (see IsReserved), except Template, which an event sets.
const (
	Host    = "__host__"    // Str: the envelope's host
	App     = "__app__"     // Str: the envelope's service (program, tag, application)
	Time    = "__time__"    // Time: the event's own time, else its arrival time
	Message = "__message__" // Str: the envelope's message
	Pid     = "__pid__"     // Int: the field "pid" when it holds a number
	Stamp   = "__stamp__"   // Str: the event time in the configured strftime format and zone
	Loco    = "__loco__"    // Int: the configured zone's UTC offset at the event time, in seconds
	// Template (Str) names the resolver template merged into the event; the
	// one reserved name an event carries as a field.
	Template = "__template__"
)

// Resolvable attributes: fields an event (or its template) carries so that
// the resolver fills them in, once, for every sink to see the same value.
const (
	RStamp   = "R_stamp__"   // Str: the event time in the configured strftime format and zone
	RTime    = "R_time__"    // Int: the event time in UTC seconds; always added; marks a resolved event
	RLoco    = "R_loco__"    // Int: the configured zone's UTC offset at the event time, in seconds
	RMessage = "R_message__" // Str: a %(key) text, replaced by its rendering
	// RError (Str) is added by the resolver to say what it could not do for
	// an event (a reserved key renamed, an unknown template, missing keys).
	RError = "R_error__"
)

// IsReserved reports whether key is in the reserved name space: two
// underscores, a name that does not itself start with an underscore, two
// underscores ("__host__", "__x__"). "_"+key is therefore never reserved,
// which is how the resolver renames a colliding application key.
func IsReserved(key string) bool {
	return len(key) > 4 && key[0] == '_' && key[1] == '_' && key[2] != '_' &&
		key[len(key)-1] == '_' && key[len(key)-2] == '_'
}

// CompileStamp compiles a strftime format in herald's dialect: the C verbs
// of github.com/lestrrat-go/strftime (%Y %m %d %H %M %S %z %Z %F %T %j ...)
// plus %L (milliseconds, 3 digits), %f (microseconds, 6 digits) and %s
// (Unix seconds). An unknown verb or a lone % at the end is an error.
func CompileStamp(format string) (*strftime.Strftime, error) {
	f, err := strftime.New(format,
		strftime.WithMilliseconds('L'),
		strftime.WithMicroseconds('f'),
		strftime.WithUnixSeconds('s'))
	if err != nil {
		// The library's text reads "failed to compile format: pattern
		// compilation failed: lookup failed: '%Q' was not found in
		// specification set": keep the part that names the verb.
		msg := err.Error()
		if i := strings.LastIndex(msg, ": "); i >= 0 {
			msg = msg[i+2:]
		}
		if _, rest, ok := strings.Cut(msg, "'"); ok && strings.Contains(rest, "' was not found") {
			msg = "unknown verb " + rest[:strings.Index(rest, "'")]
		}
		return nil, fmt.Errorf("strftime format %q: %s", format, msg)
	}
	return f, nil
}

// LoadZone returns the IANA zone name ("Europe/Paris", "UTC"); "" is
// herald's local zone (TZ, else the system's).
func LoadZone(name string) (*time.Location, error) {
	if name == "" {
		return time.Local, nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("time zone %q: not an IANA zone name such as Europe/Paris or UTC", name)
	}
	return loc, nil
}

// Missing says how a placeholder whose key the event lacks renders.
type Missing int

const (
	// MissingEmpty renders nothing.
	MissingEmpty Missing = iota
	// MissingKeep renders the placeholder as written: "%(user)".
	MissingKeep
	// MissingError renders the placeholder as written and reports the key,
	// which the resolver names in R_error__.
	MissingError
)

// MissingModes are the config spellings of Missing, in order.
var MissingModes = []string{"empty", "keep", "error"}

// MissingModesText lists MissingModes for messages: "empty, keep or error".
const MissingModesText = "empty, keep or error"

// ParseMissing reads a config spelling of Missing.
func ParseMissing(s string) (Missing, bool) {
	for i, m := range MissingModes {
		if s == m {
			return Missing(i), true
		}
	}
	return 0, false
}
