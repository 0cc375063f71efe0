package xmpp

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/herald-router/herald/config"
)

// TLS modes.
const (
	TLSStartTLS      = "starttls"
	TLSDirect        = "direct"
	TLSInsecurePlain = "insecure_plain"
)

// Oversize policies.
const (
	OversizeSplit    = "split"
	OversizeTruncate = "truncate"
	OversizeReject   = "reject"
)

// Message types of push.
var messageTypes = map[string]bool{"chat": true, "normal": true, "headline": true}

// Options are the keys of a sink of type xmpp.
type Options struct {
	// Server is the host:port to connect to. Default: the JID's domain on
	// port 5222 (5223 with tls: direct). No DNS SRV lookup is made.
	Server string `yaml:"server"`
	// JID is the account, a bare JID (herald@example.org). Required.
	JID string `yaml:"jid"`
	// Password of the account. Better to use password_file. Default ""
	// (none); one of password and password_file is required.
	Password string `yaml:"password"`
	// PasswordFile is a file whose first line is the password, relative to
	// the config file's folder; read at every connect, so a rotated
	// password is picked up at the next reconnect. Default "" (none).
	PasswordFile string `yaml:"password_file"`
	// Resource bound for the session. Default "herald".
	Resource string `yaml:"resource"`
	// TLS mode: starttls (STARTTLS, required: a server that does not offer
	// it is refused), direct (TLS from the first byte, XEP-0368) or
	// insecure_plain (no encryption at all; the password crosses the
	// network in the clear with PLAIN; needs insecure: true too). Default
	// starttls.
	TLS string `yaml:"tls"`
	// Insecure must be true for tls: insecure_plain, so that nobody turns
	// encryption off by a typo. Default false.
	Insecure bool `yaml:"insecure"`
	// CAFile is a PEM file of the certificates that may sign the server's
	// certificate, relative to the config file's folder. Default "" (the
	// system's roots).
	CAFile string `yaml:"ca_file"`
	// ServerName is the name the server's certificate must hold. Default:
	// the JID's domain.
	ServerName string `yaml:"server_name"`
	// Mechanism forces one SASL mechanism (SCRAM-SHA-512-PLUS,
	// SCRAM-SHA-256-PLUS, SCRAM-SHA-1-PLUS, SCRAM-SHA-512, SCRAM-SHA-256,
	// SCRAM-SHA-1 or PLAIN). Default "": the first of that list the server
	// offers, so SCRAM first and PLAIN last (go-xmpp negotiates from this
	// fixed order and can only be told one mechanism, so the preference
	// is this order or a single forced choice).
	Mechanism string `yaml:"mechanism"`
	// NoPlain refuses PLAIN even when the server offers nothing better.
	// Default false.
	NoPlain bool `yaml:"no_plain"`
	// Push sends each event as a message to people and rooms.
	Push PushOptions `yaml:"push"`
	// PubSub publishes each event as an item of a XEP-0060 node.
	PubSub PubSubOptions `yaml:"pubsub"`
	// Body is the template of a message's text: %(name) is an envelope
	// item (id, time, received, host, service, class, certainty, source,
	// peer, message) or a field's key (a field named like an envelope
	// item is written _name); %% is a percent sign. Default "": the
	// resolved message (the R_message__ field) when the event has one,
	// else the message. Example: "%(host) %(service): %(message)".
	Body string `yaml:"body"`
	// MaxStanzaBytes caps each stanza sent. Servers close the stream on a
	// stanza over their limit (Prosody and ejabberd: 256KiB, advertised
	// by neither), losing every stanza not yet confirmed. At least 4KiB.
	// Default 64KiB.
	MaxStanzaBytes config.Size `yaml:"max_stanza_bytes"`
	// Oversize says what happens to a message body that does not fit:
	// split (several messages, each body ending with "[part i/n]" and
	// the metadata element saying part and parts), truncate (one message,
	// the body cut and ending with "… [truncated: N bytes in all]") or
	// reject (the event is dead-lettered with code xmpp_too_large). A
	// PubSub item is one event and is never split or cut: with any policy
	// an item that does not fit is dead-lettered with xmpp_too_large.
	// Default split.
	Oversize string `yaml:"oversize"`
	// Throttle limits push messages per key and folds the excess into
	// digests. Its windows are kept in the JetStream key-value bucket
	// HERALD_THROTTLE (bus.replicas, bus.placement), so the process that
	// takes the sink over continues them: each transaction that commits
	// writes the windows it touched, one write per key whatever the number
	// of its events, and deletes those whose digest went out; a window not
	// written for 7 days is dropped. Off by default.
	Throttle ThrottleOptions `yaml:"throttle"`
	// Timeouts bound every wait on the server.
	Timeouts TimeoutOptions `yaml:"timeouts"`
}

// PushOptions: messages to JIDs and rooms.
type PushOptions struct {
	// To lists the JIDs that get each event as a message. Default none.
	To []string `yaml:"to"`
	// Rooms lists MUC rooms (room@conference.example.org) that get each
	// event as a groupchat message. The sink joins each at connect and
	// sends only after the room confirmed the join. Default none.
	Rooms []string `yaml:"rooms"`
	// Nick is the sink's nickname in the rooms. Default "herald".
	Nick string `yaml:"nick"`
	// Type of the messages to To: chat, normal or headline. A server
	// drops a headline to an account that is offline without telling, and
	// bounces chat and normal when it keeps no offline messages; either
	// way the server has confirmed taking the message. Default chat.
	Type string `yaml:"type"`
}

// PubSubOptions: items on a node.
type PubSubOptions struct {
	// Service is the PubSub service's JID (pubsub.example.org). Required
	// with node.
	Service string `yaml:"service"`
	// Node each event is published to, as an item whose id is the event
	// id (a redelivered event replaces itself). Default "" (no PubSub).
	Node string `yaml:"node"`
	// Create creates the node at connect when it does not exist (on
	// Prosody only admins may). Default false.
	Create bool `yaml:"create"`
	// MaxItems is the node's pubsub#max_items when create makes it.
	// Default 0 (the server's default).
	MaxItems int `yaml:"max_items"`
	// AccessModel is the node's pubsub#access_model when create makes it:
	// open, presence, roster, authorize or whitelist. Default "" (the
	// server's default).
	AccessModel string `yaml:"access_model"`
}

// ThrottleOptions: a rate limit per key, with digests of the excess; the
// windows are read from the bucket when the sink starts or its lease is
// acquired (throttle.go).
type ThrottleOptions struct {
	// Events is how many messages per key and window are sent; the rest
	// are folded into one digest per window. Default 0 (no throttle).
	Events int `yaml:"events"`
	// Window is the length of a key's window. Default 1m.
	Window config.Duration `yaml:"window"`
	// Key lists the items whose values make the key: envelope items
	// (host, service, class, source, peer) or field keys. Default [host].
	Key []string `yaml:"key"`
	// MaxKeys bounds how many keys are tracked at once; events of more
	// keys share one window. Default 10000.
	MaxKeys int `yaml:"max_keys"`
}

// TimeoutOptions bound the waits on the server; each ends in a retryable
// error (the sink is suspended and the chain's next sink takes over).
type TimeoutOptions struct {
	// Connect bounds connecting: TCP, TLS, authentication, binding,
	// creating the node and joining the rooms. Default 10s.
	Connect config.Duration `yaml:"connect"`
	// Write bounds each write to the server: a server that stops reading
	// for this long is taken as hung. Default 10s.
	Write config.Duration `yaml:"write"`
	// Confirm bounds the wait, at the end of a transaction, for the server
	// to confirm what was sent (the ping barrier, the publish results).
	// Default 10s.
	Confirm config.Duration `yaml:"confirm"`
	// Close bounds closing the stream politely at Close (within the
	// caller's own limit). Default 2s.
	Close config.Duration `yaml:"close"`
}

// DefaultOptions returns the defaults a config's keys override.
func DefaultOptions() *Options {
	return &Options{
		Resource:       "herald",
		TLS:            TLSStartTLS,
		MaxStanzaBytes: 64 << 10,
		Oversize:       OversizeSplit,
		Push:           PushOptions{Nick: "herald", Type: "chat"},
		Throttle:       ThrottleOptions{Window: config.Duration(time.Minute), Key: []string{"host"}, MaxKeys: 10000},
		Timeouts: TimeoutOptions{
			Connect: config.Duration(10 * time.Second),
			Write:   config.Duration(10 * time.Second),
			Confirm: config.Duration(10 * time.Second),
			Close:   config.Duration(2 * time.Second),
		},
	}
}

var mechanisms = map[string]bool{
	"SCRAM-SHA-512-PLUS": true, "SCRAM-SHA-256-PLUS": true, "SCRAM-SHA-1-PLUS": true,
	"SCRAM-SHA-512": true, "SCRAM-SHA-256": true, "SCRAM-SHA-1": true, "PLAIN": true,
}

// Validate reports bad option values; config.Load calls it.
func (o *Options) Validate() []config.FieldError {
	var errs []config.FieldError
	add := func(field, format string, a ...any) {
		errs = append(errs, config.FieldError{Field: field, Reason: fmt.Sprintf(format, a...)})
	}
	if o.JID == "" {
		add("jid", "required: the account, e.g. herald@example.org")
	} else if err := checkJID(o.JID, true); err != nil {
		add("jid", "%v", err)
	}
	if o.Password == "" && o.PasswordFile == "" {
		add("password_file", "required: give password_file (or password)")
	}
	if o.Password != "" && o.PasswordFile != "" {
		add("password", "give password or password_file, not both")
	}
	if o.Server != "" {
		if _, _, err := net.SplitHostPort(o.Server); err != nil {
			add("server", "want host:port, got %q", o.Server)
		}
	}
	if err := checkName(o.Resource); o.Resource == "" || err != nil {
		add("resource", "want a non-empty resource without markup or control characters, got %q", o.Resource)
	}
	switch o.TLS {
	case TLSStartTLS, TLSDirect:
	case TLSInsecurePlain:
		if !o.Insecure {
			add("insecure", "tls: insecure_plain sends the password in the clear: set insecure: true to say you mean it")
		}
	default:
		add("tls", "want starttls, direct or insecure_plain, got %q", o.TLS)
	}
	if o.Mechanism != "" && !mechanisms[o.Mechanism] {
		add("mechanism", "want one of SCRAM-SHA-512-PLUS, SCRAM-SHA-256-PLUS, SCRAM-SHA-1-PLUS, SCRAM-SHA-512, SCRAM-SHA-256, SCRAM-SHA-1, PLAIN, got %q", o.Mechanism)
	}
	if o.Mechanism == "PLAIN" && o.NoPlain {
		add("no_plain", "contradicts mechanism: PLAIN")
	}
	if len(o.Push.To) == 0 && len(o.Push.Rooms) == 0 && o.PubSub.Node == "" {
		add("push", "nothing to send to: give push.to, push.rooms or pubsub.node")
	}
	for i, j := range o.Push.To {
		if err := checkJID(j, false); err != nil {
			add(fmt.Sprintf("push.to[%d]", i), "%v", err)
		}
	}
	for i, j := range o.Push.Rooms {
		if err := checkJID(j, true); err != nil {
			add(fmt.Sprintf("push.rooms[%d]", i), "%v", err)
		}
	}
	if err := checkName(o.Push.Nick); o.Push.Nick == "" || err != nil {
		add("push.nick", "want a non-empty nickname without markup or control characters, got %q", o.Push.Nick)
	}
	if !messageTypes[o.Push.Type] {
		add("push.type", "want chat, normal or headline, got %q", o.Push.Type)
	}
	if o.PubSub.Node != "" {
		if o.PubSub.Service == "" {
			add("pubsub.service", "required with pubsub.node: the service's JID, e.g. pubsub.example.org")
		} else if err := checkJID(o.PubSub.Service, false); err != nil {
			add("pubsub.service", "%v", err)
		}
		if err := checkName(o.PubSub.Node); err != nil {
			add("pubsub.node", "%v", err)
		}
	}
	if o.PubSub.MaxItems < 0 {
		add("pubsub.max_items", "must not be negative")
	}
	switch o.PubSub.AccessModel {
	case "", "open", "presence", "roster", "authorize", "whitelist":
	default:
		add("pubsub.access_model", "want open, presence, roster, authorize or whitelist, got %q", o.PubSub.AccessModel)
	}
	if _, err := compileTemplate(o.Body); err != nil {
		add("body", "%v", err)
	}
	if o.MaxStanzaBytes < 4<<10 {
		add("max_stanza_bytes", "at least 4KiB, got %d bytes", int64(o.MaxStanzaBytes))
	}
	switch o.Oversize {
	case OversizeSplit, OversizeTruncate, OversizeReject:
	default:
		add("oversize", "want split, truncate or reject, got %q", o.Oversize)
	}
	if o.Throttle.Events < 0 {
		add("throttle.events", "must not be negative")
	}
	if o.Throttle.Events > 0 {
		if o.Throttle.Window <= 0 {
			add("throttle.window", "must be positive")
		}
		if len(o.Throttle.Key) == 0 {
			add("throttle.key", "name at least one item, e.g. [host]")
		}
		if o.Throttle.MaxKeys < 1 {
			add("throttle.max_keys", "must be at least 1")
		}
		if len(o.Push.To) == 0 && len(o.Push.Rooms) == 0 {
			add("throttle.events", "throttles push messages, and there are none (push.to, push.rooms)")
		}
	}
	for _, d := range []struct {
		name string
		v    config.Duration
	}{{"timeouts.connect", o.Timeouts.Connect}, {"timeouts.write", o.Timeouts.Write}, {"timeouts.confirm", o.Timeouts.Confirm}, {"timeouts.close", o.Timeouts.Close}} {
		if d.v <= 0 {
			add(d.name, "must be positive")
		}
	}
	return errs
}

// checkJID accepts a JID with the parts herald needs and nothing that
// would need escaping in a stanza (go-xmpp writes some of them raw).
func checkJID(j string, local bool) error {
	if err := checkName(j); err != nil {
		return err
	}
	if strings.ContainsAny(j, " \t") {
		return fmt.Errorf("a JID holds no spaces, got %q", j)
	}
	l, d, ok := strings.Cut(j, "@")
	if !ok {
		if local {
			return fmt.Errorf("want a bare JID like name@example.org, got %q", j)
		}
		d = l
		l = "x"
	}
	if l == "" || d == "" || strings.Contains(d, "@") || strings.Contains(l, "/") || local && strings.Contains(d, "/") {
		return fmt.Errorf("want a bare JID like name@example.org, got %q", j)
	}
	return nil
}

// checkName refuses markup and control characters.
func checkName(s string) error {
	if strings.ContainsAny(s, "<>&'\"") || !carries(s) || strings.ContainsAny(s, "\r\n\t") {
		return fmt.Errorf("must not hold markup (< > & ' \") or control characters: %q", s)
	}
	return nil
}

// password reads the password, from the file when one is given.
func (o *Options) password() (string, error) {
	if o.PasswordFile == "" {
		return o.Password, nil
	}
	data, err := os.ReadFile(o.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("password_file: %w", err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	return strings.TrimSuffix(line, "\r"), nil
}

// domain is the JID's domain.
func (o *Options) domain() string {
	_, d, _ := strings.Cut(o.JID, "@")
	return d
}

// address is where to connect.
func (o *Options) address() string {
	if o.Server != "" {
		return o.Server
	}
	port := "5222"
	if o.TLS == TLSDirect {
		port = "5223"
	}
	return net.JoinHostPort(o.domain(), port)
}
