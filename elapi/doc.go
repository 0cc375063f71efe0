// Package elapi is herald's application API for Go: build events, log them
// synchronously or asynchronously, and learn what became of every copy.
//
// It follows ELAPI (the Event Logging API): an event is an ordered
// collection of typed key-value pairs, optionally built from a template;
// a dispatcher sends it to the targets a mask selects; a tracker reports
// when each target finished with it.
//
// # Events
//
// NewEvent and FromTemplate build an Event from Fields, made like log/slog
// attributes: String, Int, Float, Bool, Time, Bytes, List and Map (lists
// and maps nest). Fields keep the order they were given. Three name spaces
// have rules, checked when the event is built, and a broken rule is an
// error naming the key (a *KeyError):
//
//   - Reserved attributes, "__x__": herald's names for the envelope.
//     AttrHost, AttrApp, AttrMessage and AttrTime set the event's host,
//     application, message and time; AttrPid sets the field "pid";
//     AttrTemplate names a template of herald's resolver config. AttrStamp
//     and AttrLoco are derived by herald and cannot be set. Any other key of
//     the form "__x__" is an error (ErrReservedKey): herald would rename it.
//   - Resolvable attributes, "R_x__": fields herald's resolver fills in,
//     once, for every sink to see the same value. ResStamp, ResTime and
//     ResLoco take no value (use Resolve); ResMessage is a text with
//     %(key) placeholders. ResError and unknown "R_x__" names are errors.
//   - Every other key is the application's; it must be valid UTF-8 and
//     given once per event (and once per map).
//
// # Dispatching
//
// Dial connects to the NATS server of herald (its embedded server's listen
// address, or the cluster herald uses) and returns a Dispatcher. Events
// are published to herald.events.<class> in protobuf batches, many events
// per JetStream message, each batch under its own Nats-Msg-Id so a batch
// sent again after a lost acknowledgement is stored once.
//
// Dispatcher.Log returns when JetStream stored the event or, with
// WaitAllTargets, when every target it was routed to committed it with a
// sink of its chain or gave up on it (Result). Dispatcher.LogAsync returns
// at once and calls back at the moments its Flags choose. The number of
// events in flight is bounded (WithMaxInFlight); when it is reached,
// LogAsync blocks or fails with ErrFull (WithBackpressure).
//
// # Tracking
//
// An event whose outcome is asked for (WaitAllTargets, OnTargetDone,
// OnDone) carries a receipt subject, herald.receipts.<application>.<id of
// the dispatcher>. herald's router reports a ROUTED receipt naming the
// targets it matched, and each target a COMMITTED or FAILED receipt per
// copy; all are stored in JetStream (the stream HERALD_RECEIPTS, kept an
// hour) before herald moves on, so they survive a crash of herald. The
// receipts one stage makes of one batch travel together: one message per
// receipt subject holding a ReceiptBatch (header Herald-Encoding:
// receipts), under a Nats-Msg-Id derived from the batch, the stage and the
// copies reported, so a redelivered batch is stored once. A message
// without that header holds a single Receipt, as herald sent before
// receipts were batched; the dispatcher reads both, so herald's processes
// can be upgraded one at a time (upgrade the applications first: an older
// dispatcher does not read batches). The dispatcher reads its subject with
// an ordered consumer and counts each (event, kind, target) once: every
// tracked event is reported done exactly once. Untracked events cost
// herald nothing extra.
//
// The package depends on nats.go and herald's generated schema only, not
// on the server.
package elapi
