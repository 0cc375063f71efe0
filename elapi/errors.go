package elapi

import (
	"errors"
	"strconv"
	"strings"
)

// Errors of building an event; a *KeyError wraps one of them and names the
// key. Test them with errors.Is.
var (
	// ErrReservedKey: the key is in herald's reserved name space ("__x__")
	// and is not one an application may set.
	ErrReservedKey = errors.New("reserved key")
	// ErrResolvableKey: the key looks like a resolvable attribute
	// ("R_x__") but is not one herald fills in, or is herald's own
	// (R_error__).
	ErrResolvableKey = errors.New("not a resolvable attribute")
	// ErrValueType: the value's kind does not fit the key (AttrHost wants
	// a string, ResTime no value, ...).
	ErrValueType = errors.New("wrong value type")
	// ErrDuplicateKey: the key was given twice in one event or map.
	ErrDuplicateKey = errors.New("key given twice")
	// ErrInvalidKey: the key is empty or not valid UTF-8.
	ErrInvalidKey = errors.New("invalid key")
	// ErrInvalidText: a text value is not valid UTF-8 (use Bytes for
	// arbitrary bytes).
	ErrInvalidText = errors.New("text is not valid UTF-8")
)

// Errors of dispatching.
var (
	// ErrInvalidOption wraps every error of an Option given to Dial.
	ErrInvalidOption = errors.New("invalid option")
	// ErrNoHerald: herald's streams are not on the server Dial reached.
	ErrNoHerald = errors.New("herald's streams not found")
	// ErrFull: the dispatcher holds WithMaxInFlight events and was told to
	// fail rather than wait (WithBackpressure(FailWhenFull)).
	ErrFull = errors.New("too many events in flight")
	// ErrClosed: the dispatcher is closed, or was closed before the event
	// reached the moment its caller waited for.
	ErrClosed = errors.New("dispatcher closed")
	// ErrInvalidMask: the mask selects no target.
	ErrInvalidMask = errors.New("empty target mask")
	// ErrTooBig: one event is larger than the server's maximum payload.
	ErrTooBig = errors.New("event larger than the server's max payload")
	// ErrTargetFailed is what Result.Err wraps when a target gave up on
	// the event.
	ErrTargetFailed = errors.New("target failed")
)

// KeyError is a problem with one key of an event or template. Key is the
// path of the key: "user", or "request.headers.host" inside maps, or
// "tags[2].name" inside lists.
type KeyError struct {
	Key string
	Err error  // one of the Err... sentinels of this package
	Why string // what to do instead, may be empty
}

func (e *KeyError) Error() string {
	var b strings.Builder
	b.WriteString("elapi: key ")
	b.WriteString(strconv.Quote(e.Key))
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	if e.Why != "" {
		b.WriteString(": ")
		b.WriteString(e.Why)
	}
	return b.String()
}

func (e *KeyError) Unwrap() error { return e.Err }
