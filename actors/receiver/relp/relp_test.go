package relp_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herald-router/herald/actors/receiver/receivertest"
	"github.com/herald-router/herald/actors/receiver/relp"
)

func start(t testing.TB, r *receivertest.Rig, edit func(o *relp.Options)) *relp.Server {
	t.Helper()
	o := relp.DefaultOptions()
	o.Listen = "127.0.0.1:0"
	if edit != nil {
		edit(o)
	}
	if errs := o.Validate(); len(errs) > 0 {
		t.Fatalf("options: %v", errs)
	}
	s, err := relp.New(r.Env, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	s.Serve()
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s
}

// client is a bare RELP client that lets a test break the rules.
type client struct {
	t    testing.TB
	c    net.Conn
	r    *bufio.Reader
	txnr int
}

func connect(t testing.TB, c net.Conn) *client {
	t.Helper()
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

func dial(t testing.TB, addr net.Addr) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return connect(t, c)
}

// send writes one command and returns its transaction number.
func (c *client) send(cmd, data string) int {
	c.t.Helper()
	c.txnr++
	frame := fmt.Sprintf("%d %s %d", c.txnr, cmd, len(data))
	if data != "" {
		frame += " " + data
	}
	if _, err := io.WriteString(c.c, frame+"\n"); err != nil {
		c.t.Fatalf("send %s: %v", cmd, err)
	}
	return c.txnr
}

// response reads the next frame: its txnr, command and data.
func (c *client) response() (int, string, string, error) {
	var n, size int
	var cmd string
	if _, err := fmt.Fscanf(c.r, "%d %s %d", &n, &cmd, &size); err != nil {
		return 0, "", "", err
	}
	data := make([]byte, size+1)
	if size == 0 {
		data = data[:1] // just the LF
	} else if _, err := c.r.Discard(1); err != nil { // the space
		return 0, "", "", err
	}
	if _, err := io.ReadFull(c.r, data); err != nil {
		return 0, "", "", err
	}
	return n, cmd, strings.TrimSuffix(string(data), "\n"), nil
}

// expect reads the response to txnr and checks its status.
func (c *client) expect(txnr int, status string) string {
	c.t.Helper()
	n, cmd, data, err := c.response()
	if err != nil {
		c.t.Fatalf("response to %d: %v", txnr, err)
	}
	if n != txnr || cmd != "rsp" || !strings.HasPrefix(data, status) {
		c.t.Fatalf("got %d %s %q, want rsp %d %s", n, cmd, data, txnr, status)
	}
	return data
}

func (c *client) open() {
	c.t.Helper()
	n := c.send("open", "relp_version=0\nrelp_software=test\ncommands=syslog")
	if offers := c.expect(n, "200"); !strings.Contains(offers, "commands=syslog") {
		c.t.Fatalf("offers %q lack the syslog command", offers)
	}
}

// closed reports whether the server ended the connection.
func (c *client) closed() bool {
	_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, cmd, _, err := c.response()
		if err != nil {
			return true
		}
		if cmd == "serverclose" {
			continue
		}
		return false
	}
}

func TestASessionIsAnsweredInOrderAfterEachRecordIsStored(t *testing.T) {
	r := receivertest.New(t)
	s := start(t, r, nil)
	c := dial(t, s.Addr())
	c.open()
	// The first records one at a time: each is in the raw stream by the
	// time its answer arrives.
	for i := range 3 {
		n := c.send("syslog", fmt.Sprintf("<13>Nov 26 06:00:00 host app: one by one %d", i))
		c.expect(n, "200")
		if got := r.Records(t); len(got) != i+1 {
			t.Fatalf("answer %d came with %d records stored", n, len(got))
		}
	}
	// Then a full window at once, answered in order.
	var txnrs []int
	var want []string
	for i := range 500 {
		line := fmt.Sprintf("<13>1 2026-11-26T06:00:00Z host app - - - windowed %d\n", i)
		want = append(want, strings.TrimSuffix(line, "\n"))
		txnrs = append(txnrs, c.send("syslog", line))
	}
	for _, n := range txnrs {
		c.expect(n, "200")
	}
	got := r.Records(t)
	if len(got) != 503 || !slices.Equal(got[3:], want) {
		t.Fatalf("%d records stored; want the window's 500 after 3, each once and in order", len(got))
	}
	c.expect(c.send("close", ""), "200")
	if !c.closed() {
		t.Error("the session stayed open after close")
	}
	if ev := r.Events(t)[0]; ev.Source != "test" || ev.TargetMask != 4 || !strings.HasPrefix(ev.Peer, "127.0.0.1:") || ev.ReceivedUnixNano == 0 {
		t.Errorf("envelope: %+v", ev)
	}
}

func TestAClientThatVanishesMidWindowLosesNothingAcknowledged(t *testing.T) {
	r := receivertest.New(t)
	s := start(t, r, func(o *relp.Options) { o.Window = 16 })

	// One that stops sending (half close) mid-window: everything it sent
	// is read, stored and answered.
	c := dial(t, s.Addr())
	c.open()
	var txnrs []int
	for i := range 100 {
		txnrs = append(txnrs, c.send("syslog", fmt.Sprintf("<13>half closed %d", i)))
	}
	_ = c.c.(*net.TCPConn).CloseWrite()
	for _, n := range txnrs {
		c.expect(n, "200")
	}
	r.WaitRecords(t, 100)

	// One that resets the connection with answers unread: what it had
	// answered is stored; the rest it must send again (the kernel drops
	// what the server had not read yet), so some may arrive twice.
	c = dial(t, s.Addr())
	c.open()
	var acked []string
	for i := range 50 {
		line := fmt.Sprintf("<13>acked %d", i)
		c.expect(c.send("syslog", line), "200")
		acked = append(acked, line)
	}
	for i := range 200 {
		c.send("syslog", fmt.Sprintf("<13>unanswered %d", i))
	}
	_ = c.c.(*net.TCPConn).SetLinger(0)
	_ = c.c.Close()
	got := r.Records(t)
	for _, a := range acked {
		if !slices.Contains(got, a) {
			t.Errorf("acknowledged record %q is not stored", a)
		}
	}
	receivertest.Eventually(t, func() error {
		if n := r.Connections(); n != 0 {
			return fmt.Errorf("%v connections still open", n)
		}
		return nil
	})
	// The server is fine: a new session works.
	c = dial(t, s.Addr())
	c.open()
	c.expect(c.send("syslog", "<13>after the vanishing"), "200")
}

func TestBrokenFramesEndTheSessionAfterTheGoodRecords(t *testing.T) {
	for _, tc := range []struct {
		name, garbage string
		counted       bool
	}{
		{"garbage instead of a frame", "hello there\n", true},
		{"data shorter than its length", "9 syslog 100 short\n", true},
		{"a command name that is not a word", "9 sys!og 1 x\n", true},
		{"a command before open", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := receivertest.New(t)
			s := start(t, r, nil)
			c := dial(t, s.Addr())
			if tc.garbage == "" {
				c.send("syslog", "<13>too early")
			} else {
				c.open()
				c.expect(c.send("syslog", "<13>good"), "200")
				_, _ = io.WriteString(c.c, tc.garbage)
				if strings.Contains(tc.garbage, "short") {
					_ = c.c.(*net.TCPConn).CloseWrite() // the rest never comes
				}
			}
			if !c.closed() {
				t.Fatal("the session survived a broken frame")
			}
			want := 1
			if tc.garbage == "" {
				want = 0
			}
			if got := len(r.Records(t)); got != want {
				t.Errorf("%d records stored, want %d", got, want)
			}
			if n := r.Rejected("bad_frame"); (n == 1) != tc.counted {
				t.Errorf("rejected bad_frame = %v", n)
			}
		})
	}
}

func TestOversizeAndEmptyRecordsAreCountedAndAnswered(t *testing.T) {
	r := receivertest.New(t)
	s := start(t, r, func(o *relp.Options) { o.MaxMessageSize = 100 })
	c := dial(t, s.Addr())
	c.open()
	c.expect(c.send("syslog", strings.Repeat("x", 101)), "200")
	c.expect(c.send("syslog", "\n"), "200")
	c.expect(c.send("bogus", "what"), "500")
	c.expect(c.send("syslog", "<13>after"), "200")
	if got := r.Records(t); len(got) != 1 || got[0] != "<13>after" {
		t.Errorf("records = %q", got)
	}
	if a, b := r.Rejected("too_long"), r.Rejected("empty"); a != 1 || b != 1 {
		t.Errorf("rejected too_long %v, empty %v", a, b)
	}
}

func TestRecordsThatCannotBeStoredAreNeverAnswered(t *testing.T) {
	r := receivertest.New(t)
	s := start(t, r, nil)
	c := dial(t, s.Addr())
	c.open()
	c.expect(c.send("syslog", "<13>stored"), "200")
	if err := r.Env.Batcher.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.send("syslog", "<13>not stored")
	if !c.closed() {
		t.Fatal("a record that was not stored was answered")
	}
}

func TestShutdownAnswersWhatWasSentThenSaysServerclose(t *testing.T) {
	r := receivertest.New(t)
	o := relp.DefaultOptions()
	o.Listen = "127.0.0.1:0"
	s, err := relp.New(r.Env, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	s.Serve()
	c := dial(t, s.Addr())
	c.open()
	var txnrs []int
	for i := range 100 {
		txnrs = append(txnrs, c.send("syslog", fmt.Sprintf("<13>before shutdown %d", i)))
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	}()
	for _, n := range txnrs {
		c.expect(n, "200")
	}
	if n, cmd, _, err := c.response(); err != nil || n != 0 || cmd != "serverclose" {
		t.Fatalf("after the answers: %d %s %v, want 0 serverclose", n, cmd, err)
	}
	<-done
	if got := len(r.Records(t)); got != 100 {
		t.Errorf("%d records stored, want 100", got)
	}
}

func TestRELPOverTLSWithAClientCertificate(t *testing.T) {
	certs := receivertest.WriteCerts(t)
	r := receivertest.New(t)
	s := start(t, r, func(o *relp.Options) {
		o.Listen, o.TLS = "", "127.0.0.1:0"
		o.TLSOptions.CertFile, o.TLSOptions.KeyFile = certs.ServerCert, certs.ServerKey
		o.TLSOptions.ClientAuth, o.TLSOptions.ClientCAFile = "require", certs.CA
	})
	tc, err := tls.Dial("tcp", s.TLSAddr().String(), &tls.Config{RootCAs: certs.Pool, ServerName: "localhost",
		Certificates: []tls.Certificate{certs.Client}})
	if err != nil {
		t.Fatal(err)
	}
	c := connect(t, tc)
	c.open()
	c.expect(c.send("syslog", "<13>over tls"), "200")
	if got := r.Records(t); len(got) != 1 || got[0] != "<13>over tls" {
		t.Errorf("records = %q", got)
	}
}

func TestOptionsAreValidated(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(o *relp.Options)
		field string
	}{
		{"a receiver needs a listener", func(o *relp.Options) { o.Listen = "" }, "listen"},
		{"tls needs a certificate and key", func(o *relp.Options) { o.TLS = ":2515"; o.TLSOptions.KeyFile = "k" }, "tls_options.cert_file"},
		{"a window of zero is refused", func(o *relp.Options) { o.Window = 0 }, "window"},
		{"a tiny maximum is refused", func(o *relp.Options) { o.MaxMessageSize = 1 }, "max_message_size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := relp.DefaultOptions()
			o.Listen = ":2514"
			tc.edit(o)
			if errs := o.Validate(); len(errs) != 1 || errs[0].Field != tc.field {
				t.Errorf("errors = %+v, want one for %s", errs, tc.field)
			}
		})
	}
}
