// Package resolver is the stage that makes an event final, once, so that
// every sink sees the same values: it gives each event its id (unique,
// sortable, and the same if the event is processed again after a crash),
// merges its template and fills its resolvable attributes. This is ELAPI's
// event model over herald's envelope; New compiles a config.Resolver into a
// Processor, plain Go that tests call without an actor system.
//
// # Events
//
// An event is its envelope (id, host, service, time, message ...) plus
// ordered, typed fields. Resolve works in this order:
//
//  1. The id is derived from the arrival time, the batch id and the index,
//     unless the intake gave one; it never changes afterwards.
//  2. An event whose (first) R_time__ field holds an integer was resolved
//     before (a replay) and is left as it is: resolving is idempotent.
//     Applications must therefore not send an integer R_time__ themselves
//     (a null or text one is filled in, like R_stamp__).
//  3. A field whose key is in the reserved name space (attrs.IsReserved:
//     "__x__") collides with herald's names: it is renamed "_"+key (which
//     is never reserved) and R_error__ says so. The event is not refused:
//     refusing means dead-lettering its whole batch, up to a thousand other
//     applications' events, for one bad key.
//  4. The template the event names in its __template__ field (text), else
//     resolver.default_template, is merged: each template field whose key
//     the event lacks is appended, in template order, after the event's
//     own fields. An unknown template name falls back to the default
//     template and is named in R_error__.
//  5. Resolvable fields are filled in place: R_stamp__, R_loco__, R_time__
//     first, then R_message__ (so its text may use them).
//  6. R_time__ is appended when the event (or its template) had none.
//  7. What went wrong is joined with "; " into the field R_error__
//     (after the text of an existing R_error__; a non-text one is
//     replaced). Process never fails a batch for an event's content.
//
// # Reserved attributes
//
// Read-only names a %(key) placeholder can use (Processor.Attribute answers
// them for others, such as filters):
//
//	__host__     Str   envelope host
//	__app__      Str   envelope service
//	__message__  Str   envelope message
//	__time__     Time  the event's own time, else its arrival time
//	__pid__      Int   the field "pid" when it holds a number
//	__stamp__    Str   __time__ in resolver.stamp_format and resolver.zone
//	__loco__     Int   resolver.zone's UTC offset at __time__, in seconds
//	__template__ Str   the template the event names (an ordinary field)
//
// An empty host, service or pid is absent.
//
// # Resolvable attributes
//
//	R_stamp__    Str  __stamp__
//	R_time__     Int  __time__ in UTC seconds; always added
//	R_loco__     Int  __loco__
//	R_message__  Str  its text with %(key) placeholders filled
//
// The value an event or template gives R_stamp__, R_loco__ or R_time__ is
// replaced; only its position is kept.
//
// # R_message__
//
// %(key) is replaced by the text of the value of key, looked up in the
// event's fields (after the template merge), then among the reserved
// attributes, then among the envelope names id, host, service, app,
// message, class, source, peer and time. %% is "%", and a "%" not followed
// by "(" is itself. Parentheses nest: %(f(x)) names the key "f(x)". A key
// the event lacks renders as resolver.missing_key says: nothing, the
// placeholder as written, or the placeholder and its name in R_error__. At
// run time an unbalanced "%(" and an empty "%()" are written as they are
// (in a template they are config errors). Values render as text: numbers
// in decimal, times in RFC 3339 UTC, bytes in base64, lists and maps as
// JSON, null as nothing. The rendering is cut at resolver.max_message_size.
// A non-text R_message__ is left as it is and named in R_error__.
//
// # Fast path
//
// ProcessWire handles the common batch on its wire form: when no default
// template is configured and no event without an integer R_time__ has a
// field whose key starts with "R_" or "__", resolving only adds an id and R_time__,
// which it appends to the encoded bytes. Otherwise it declines and Process
// does the work; both give the same bytes' meaning (see the tests).
package resolver
