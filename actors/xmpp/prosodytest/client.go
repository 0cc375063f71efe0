package prosodytest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xmppo/go-xmpp"
)

// Message is a message stanza a Client received.
type Message struct {
	From, Type, Body string
	// Other holds the child elements go-xmpp does not know (herald's
	// metadata element, error conditions).
	Other []xmpp.XMLElement
}

// Attr is the attribute name of the first child element named elem, and
// whether there is one.
func (m Message) Attr(elem, name string) (string, bool) {
	for _, e := range m.Other {
		if e.XMLName.Local != elem {
			continue
		}
		for _, a := range e.Attr {
			if a.Name.Local == name {
				return a.Value, true
			}
		}
	}
	return "", false
}

// Item is a PubSub item a Client received, as a notification or fetched.
type Item struct {
	Node, ID string
	// Payload is the item's content: the XML inside <item>.
	Payload []byte
}

// Client is a test account's connection to the server that records every
// message and PubSub item it receives. It survives server restarts
// through Reconnect, keeping what it recorded.
type Client struct {
	s    *Server
	user string

	ids atomic.Uint64

	mu      sync.Mutex
	c       *xmpp.Client
	dead    chan struct{}
	err     error
	waiters map[string]chan xmpp.IQ
	msgs    []Message
	items   []Item
	rooms   map[string]string // room → nick
	nodes   []string
	selfIn  map[string]chan xmpp.Presence
}

// Dial connects user (STARTTLS, verifying the test certificate);
// t.Cleanup disconnects.
func (s *Server) Dial(t testing.TB, user string) *Client {
	t.Helper()
	cl := &Client{s: s, user: user, rooms: map[string]string{}}
	if err := cl.connect(); err != nil {
		t.Fatalf("prosodytest: connect %s: %v", user, err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// TLSConfig verifies the server's self-signed certificate.
func (s *Server) TLSConfig() (*tls.Config, error) {
	pem, err := os.ReadFile(s.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no certificate in " + s.CAFile)
	}
	return &tls.Config{ServerName: Domain, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// Options are go-xmpp options for user over STARTTLS.
func (s *Server) Options(user, resource string) (xmpp.Options, error) {
	tc, err := s.TLSConfig()
	if err != nil {
		return xmpp.Options{}, err
	}
	return xmpp.Options{
		Host: s.Addr(), User: s.JID(user), Password: s.Password, Resource: resource,
		NoTLS: true, StartTLS: true, TLSConfig: tc, DialTimeout: 5 * time.Second,
	}, nil
}

func (cl *Client) connect() error {
	o, err := cl.s.Options(cl.user, "test-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err != nil {
		return err
	}
	type res struct {
		c   *xmpp.Client
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := o.NewClient()
		ch <- res{c, err}
	}()
	var r res
	select {
	case r = <-ch:
	case <-time.After(10 * time.Second):
		return errors.New("no session after 10s")
	}
	if r.err != nil {
		return r.err
	}
	cl.mu.Lock()
	cl.c, cl.dead, cl.err = r.c, make(chan struct{}), nil
	cl.waiters, cl.selfIn = map[string]chan xmpp.IQ{}, map[string]chan xmpp.Presence{}
	c, dead := cl.c, cl.dead
	cl.mu.Unlock()
	go cl.recv(c, dead)
	return nil
}

func (cl *Client) recv(c *xmpp.Client, dead chan struct{}) {
	for {
		st, err := c.Recv()
		if err != nil {
			cl.mu.Lock()
			if cl.c == c {
				cl.err = err
			}
			cl.mu.Unlock()
			close(dead)
			return
		}
		cl.mu.Lock()
		switch v := st.(type) {
		case xmpp.Chat:
			// Rosters and room subjects (no body) are not messages.
			if v.Type != "roster" && (v.Text != "" || v.Type == "error") {
				cl.msgs = append(cl.msgs, Message{From: v.Remote, Type: v.Type, Body: v.Text, Other: v.OtherElem})
			}
		case xmpp.PubsubEvent:
			for _, it := range v.Items {
				cl.items = append(cl.items, Item{Node: v.Node, ID: it.ID, Payload: it.InnerXML})
			}
		case xmpp.IQ:
			if w, ok := cl.waiters[v.ID]; ok {
				delete(cl.waiters, v.ID)
				w <- v
			}
		case xmpp.Presence:
			if w, ok := cl.selfIn[strings.ToLower(v.From)]; ok {
				delete(cl.selfIn, strings.ToLower(v.From))
				w <- v
			}
		}
		cl.mu.Unlock()
	}
}

// Close disconnects (by closing the stream; the server answers).
func (cl *Client) Close() {
	cl.mu.Lock()
	c, dead := cl.c, cl.dead
	cl.c = nil
	cl.mu.Unlock()
	if c == nil {
		return
	}
	_, _ = c.SendOrg("</stream:stream>")
	select {
	case <-dead:
	case <-time.After(3 * time.Second):
	}
}

// iq sends an IQ of type typ with body (raw XML) to `to` and waits for the
// answer.
func (cl *Client) iq(to, typ, body string) (xmpp.IQ, error) {
	id := "t" + strconv.FormatUint(cl.ids.Add(1), 10)
	w := make(chan xmpp.IQ, 1)
	cl.mu.Lock()
	c, dead := cl.c, cl.dead
	if c == nil {
		cl.mu.Unlock()
		return xmpp.IQ{}, errors.New("not connected")
	}
	cl.waiters[id] = w
	cl.mu.Unlock()
	if _, err := c.SendOrg(fmt.Sprintf("<iq type='%s' to='%s' id='%s'>%s</iq>", typ, to, id, body)); err != nil {
		return xmpp.IQ{}, err
	}
	select {
	case r := <-w:
		return r, nil
	case <-dead:
		return xmpp.IQ{}, fmt.Errorf("connection lost: %v", cl.Err())
	case <-time.After(10 * time.Second):
		return xmpp.IQ{}, errors.New("no answer after 10s")
	}
}

// Err is why the connection ended, nil while it is up.
func (cl *Client) Err() error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.err
}

// Sync returns when everything the server sent this account before now has
// been recorded: the server answers a ping after routing what came before
// it, and the answer comes back on the same stream after those stanzas.
func (cl *Client) Sync(t testing.TB) {
	t.Helper()
	r, err := cl.iq(Domain, "get", "<ping xmlns='urn:xmpp:ping'/>")
	if err != nil {
		t.Fatalf("prosodytest: sync %s: %v", cl.user, err)
	}
	if r.Type != "result" {
		t.Fatalf("prosodytest: sync %s: ping answered %s", cl.user, r.Type)
	}
}

// Join enters a MUC room (bare JID) as nick, asking for its whole history,
// and waits until the room confirmed the join.
func (cl *Client) Join(t testing.TB, room, nick string) {
	t.Helper()
	if err := cl.join(room, nick); err != nil {
		t.Fatalf("prosodytest: join %s: %v", room, err)
	}
	cl.mu.Lock()
	cl.rooms[room] = nick
	cl.mu.Unlock()
}

func (cl *Client) join(room, nick string) error {
	full := room + "/" + nick
	w := make(chan xmpp.Presence, 1)
	cl.mu.Lock()
	c, dead := cl.c, cl.dead
	cl.selfIn[strings.ToLower(full)] = w
	cl.mu.Unlock()
	if _, err := c.SendOrg(fmt.Sprintf("<presence to='%s'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='100000'/></x></presence>", full)); err != nil {
		return err
	}
	select {
	case p := <-w:
		if p.Type == "error" {
			return errors.New("the room refused the join")
		}
		return nil
	case <-dead:
		return fmt.Errorf("connection lost: %v", cl.Err())
	case <-time.After(10 * time.Second):
		return errors.New("no self-presence after 10s")
	}
}

// NodeConfig is the configure form herald's tests create nodes with: many
// items kept, open access.
const NodeConfig = "<configure><x xmlns='jabber:x:data' type='submit'>" +
	"<field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>" +
	"<field var='pubsub#max_items'><value>100000</value></field>" +
	"<field var='pubsub#access_model'><value>open</value></field></x></configure>"

// CreateNode creates a node on the PubSub service; it reports whether the
// server created it (false: it exists already, or creating was refused).
func (cl *Client) CreateNode(t testing.TB, node string) bool {
	t.Helper()
	r, err := cl.iq(PubSub, "set", "<pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='"+node+"'/>"+NodeConfig+"</pubsub>")
	if err != nil {
		t.Fatalf("prosodytest: create node %s: %v", node, err)
	}
	return r.Type == "result"
}

// Subscribe creates the node if it is missing, subscribes this account's
// bare JID to it, then fetches the items it already holds (recorded like
// notifications), so nothing published before the subscription is missed.
func (cl *Client) Subscribe(t testing.TB, node string) {
	t.Helper()
	if err := cl.subscribe(node); err != nil {
		t.Fatalf("prosodytest: subscribe %s: %v", node, err)
	}
	cl.mu.Lock()
	cl.nodes = append(cl.nodes, node)
	cl.mu.Unlock()
}

func (cl *Client) subscribe(node string) error {
	_, _ = cl.iq(PubSub, "set", "<pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='"+node+"'/>"+NodeConfig+"</pubsub>")
	r, err := cl.iq(PubSub, "set", "<pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='"+node+"' jid='"+cl.s.JID(cl.user)+"'/></pubsub>")
	if err != nil {
		return err
	}
	if r.Type != "result" {
		return errors.New("subscription refused")
	}
	r, err = cl.iq(PubSub, "get", "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='"+node+"'/></pubsub>")
	if err != nil {
		return err
	}
	if r.Type != "result" {
		return errors.New("fetching the items refused")
	}
	items, err := parseItems(node, r.Query)
	if err != nil {
		return fmt.Errorf("items: %w", err)
	}
	cl.mu.Lock()
	cl.items = append(cl.items, items...)
	cl.mu.Unlock()
	return nil
}

// parseItems reads the <item> elements of an items result.
func parseItems(node string, data []byte) ([]Item, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	var out []Item
	for {
		tok, err := d.Token()
		if err != nil {
			if err.Error() == "EOF" {
				return out, nil
			}
			return out, err
		}
		se, ok := tok.(xml.StartElement)
		if !ok || se.Name.Local != "item" {
			continue
		}
		var it struct {
			ID    string `xml:"id,attr"`
			Inner []byte `xml:",innerxml"`
		}
		if err := d.DecodeElement(&it, &se); err != nil {
			return out, err
		}
		out = append(out, Item{Node: node, ID: it.ID, Payload: it.Inner})
	}
}

// Reconnect connects again after the server was restarted (or the
// connection was lost), enters the rooms again and subscribes again; what
// was recorded is kept.
func (cl *Client) Reconnect(t testing.TB) {
	t.Helper()
	cl.Close()
	if err := cl.connect(); err != nil {
		t.Fatalf("prosodytest: reconnect %s: %v", cl.user, err)
	}
	cl.mu.Lock()
	rooms := make(map[string]string, len(cl.rooms))
	for r, n := range cl.rooms {
		rooms[r] = n
	}
	nodes := append([]string(nil), cl.nodes...)
	cl.mu.Unlock()
	for r, n := range rooms {
		if err := cl.join(r, n); err != nil {
			t.Fatalf("prosodytest: join %s again: %v", r, err)
		}
	}
	for _, n := range nodes {
		if err := cl.subscribe(n); err != nil {
			t.Fatalf("prosodytest: subscribe %s again: %v", n, err)
		}
	}
}

// Messages returns a copy of the messages received so far.
func (cl *Client) Messages() []Message {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return append([]Message(nil), cl.msgs...)
}

// Items returns a copy of the PubSub items received so far.
func (cl *Client) Items() []Item {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return append([]Item(nil), cl.items...)
}

// Reset forgets what was recorded.
func (cl *Client) Reset() {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	cl.msgs, cl.items = nil, nil
}
