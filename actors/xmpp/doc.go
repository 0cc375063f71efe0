// Package xmpp is the XMPP publisher, a sink provider (type xmpp) that
// can head or sit in a fail-over chain like any other: it pushes each
// event as a message to JIDs and MUC rooms, and publishes it as an item
// of a XEP-0060 PubSub node, with github.com/xmppo/go-xmpp for the
// connection (TLS, SASL, binding) and stanzas it builds and escapes
// itself.
//
// # The transaction
//
// Begin connects when there is no live session (lazily: a server that is
// down only suspends the sink; the driver's back-off paces the
// reconnects), creates the node if pubsub.create says so, joins the rooms
// and waits until each confirmed the join, then sends the throttle's
// digests that are due. Do sends the event (a publish IQ; a message per
// recipient, per part) and answers Deferred. End commits only what the
// server confirmed: each publish's IQ result, and for messages a ping IQ
// sent after them: the server handles a stream in order, so its answer
// says that every earlier stanza was taken (XEP-0198 would say the same
// per stanza, but go-xmpp cannot speak it). Anything not confirmed when
// the connection drops, or not confirmed within timeouts.confirm, is a
// retryable error: the session is dropped and the transaction is
// delivered again by the driver. Redelivery duplicates nothing on a node
// (the item id is the event id, so the item replaces itself) and can
// duplicate messages, which carry the event id for receivers that care.
//
// # Never hanging
//
// go-xmpp has no deadline after its TCP dial, and its Send and Close
// block for ever on a server that stopped reading. The sink therefore
// points go-xmpp at an in-process relay (relay.go) that dials the server
// itself, bounds every write with timeouts.write and can be aborted, which
// fails whatever go-xmpp is blocked in at once. Connecting is bounded by
// timeouts.connect, confirmation by timeouts.confirm and Close by
// timeouts.close and its ctx: a hung server suspends the sink within
// those times and the chain's next sink takes the events.
//
// # What is sent
//
// A message's body is the body template over the event (default: the
// resolved message R_message__, else the message), escaped for XML 1.0;
// characters XML cannot carry (C0 controls other than tab, LF and CR,
// U+FFFE, U+FFFF, invalid UTF-8) become U+FFFD (Readable gives the text a
// receiver gets). Each message also carries
// <herald xmlns='urn:herald:event:0' event='ID'/> (with part and parts when
// split), so receivers can tell repeats apart. A body too large for
// max_stanza_bytes is split, truncated or rejected as oversize says. A
// PubSub item holds the whole event, typed and lossless (payload.go;
// DecodeEvent reads it back). Bounced messages (an unknown or offline
// recipient) are logged and counted: the server confirmed taking them,
// and retrying would not make the recipient appear. A room that bounces
// a message or removes the sink fails the transaction, which is sent
// again after joining anew.
//
// The throttle (throttle.go) limits push messages per key and folds the
// excess into digests; it keeps its windows in the JetStream key-value
// bucket bus.KVThrottle (windows.go), so the process that takes the sink's
// lease over continues them. Its exact semantics are documented there.
//
// Errors: dead-letter codes xmpp_too_large and xmpp_item_refused; the
// retryable causes ErrTimeout, ErrConnectionLost and ErrRefused, tested
// with errors.Is.
package xmpp
