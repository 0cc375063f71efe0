package xmpp

import "errors"

// Dead-letter reason codes of events this sink can never write.
const (
	// CodeTooLarge: the event does not fit in max_stanza_bytes and the
	// oversize policy is reject (for a PubSub item, also split: an item is
	// one event and is never split).
	CodeTooLarge = "xmpp_too_large"
	// CodeRefused: the PubSub service refused this item while it accepted
	// others of the same transaction on the same node, so the refusal is
	// about the item, not the node or the account.
	CodeRefused = "xmpp_item_refused"
)

// Retryable errors; a transaction that fails with one of them is
// delivered again once the sink's back-off has passed.
var (
	// ErrTimeout: the server did not answer within the configured time
	// (connect, write or confirm): it is hung, or the network is.
	ErrTimeout = errors.New("xmpp server did not answer in time")
	// ErrConnectionLost: the connection ended before the server confirmed
	// what was sent.
	ErrConnectionLost = errors.New("xmpp connection lost")
	// ErrRefused: the server refused a stanza the sink depends on (joining
	// a room, publishing to the node): a wrong config or missing rights,
	// which an operator must fix; the sink retries meanwhile.
	ErrRefused = errors.New("xmpp server refused")
	// ErrClosed: the provider was closed.
	ErrClosed = errors.New("xmpp sink closed")
)
