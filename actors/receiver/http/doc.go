// Package http is the HTTP receiver (type "http"): POST /ingest takes
// events and answers 200 only once JetStream stored every one of them.
//
// The body is, by its Content-Type:
//
//   - application/json, application/x-ndjson (or none): events in the JSON
//     form of schemas/event.schema.json — one object, an array of objects,
//     or one object per line (NDJSON). They are complete events already, as
//     applications publish them onto NATS, so they go straight to
//     herald.events.<class> (class "app" when the event names none),
//     without the classifier; their source is the receiver's name, so
//     routing rules can name it.
//   - text/plain: raw records, one per line, published to
//     herald.raw.<receiver> like syslog lines, to be classified.
//
// The whole body is checked before anything is published: a bad event or
// line answers 400 with the reason (which event, what is wrong) and nothing
// of the request is stored. Answers:
//
//	200  every event is stored: {"accepted": N}
//	400  bad input, with the reason; 413 a body over max_body_size;
//	     415 another Content-Type; 401 a missing or wrong bearer token
//	429  max_in_flight requests are already being stored (Retry-After: 1)
//	503  the events could not be stored within timeout, or herald is
//	     shutting down (Retry-After: 1); a retry may store some twice
//
// A client that retries after a 503 or a lost answer may make duplicates:
// delivery is at least once.
package http
