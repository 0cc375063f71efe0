package prosodytest

import (
	"testing"
)

func TestAServerStartsAndTwoAccountsTalk(t *testing.T) {
	s := Start(t, Options{})
	sub := s.Dial(t, "sub")
	pub := s.Dial(t, "pub")
	sub.Subscribe(t, "n1")
	sub.Join(t, "room1@"+MUC, "sub")
	if _, err := pub.c.SendOrg("<message to='sub@localhost' type='chat'><body>hi &amp; there</body></message>"); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.iq(PubSub, "set", "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n1'><item id='i1'><x xmlns='urn:t'>v</x></item></publish></pubsub>"); err != nil {
		t.Fatal(err)
	}
	pub.Sync(t)
	sub.Sync(t)
	if m := sub.Messages(); len(m) != 1 || m[0].Body != "hi & there" {
		t.Fatalf("messages %+v", m)
	}
	if it := sub.Items(); len(it) != 1 || it[0].ID != "i1" {
		t.Fatalf("items %+v", it)
	}
	s.Kill(t)
	s.Start(t)
	sub.Reconnect(t)
}
