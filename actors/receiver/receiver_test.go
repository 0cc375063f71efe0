package receiver_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/herald-router/herald/actors/receiver"
	"github.com/herald-router/herald/actors/receiver/receivertest"
	"github.com/herald-router/herald/bus/bustest"
	"github.com/herald-router/herald/schemas"
)

// startSyslog starts a syslog receiver with o (defaults for what o leaves
// zero) and shuts it down at cleanup, before the batcher closes.
func startSyslog(t testing.TB, r *receivertest.Rig, edit func(o *receiver.SyslogOptions)) *receiver.Syslog {
	t.Helper()
	o := receiver.DefaultSyslogOptions()
	edit(o)
	if errs := o.Validate(); len(errs) > 0 {
		t.Fatalf("options: %v", errs)
	}
	s, err := receiver.NewSyslog(r.Env, o)
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

func dial(t testing.TB, network, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestBadClientsNeitherCrashNorStallOthers(t *testing.T) {
	r := receivertest.New(t)
	s := startSyslog(t, r, func(o *receiver.SyslogOptions) {
		o.TCP, o.MaxMessageSize, o.MaxConnections = "127.0.0.1:0", 1024, 8
	})
	addr := s.TCPAddress().String()

	// A client that connects and never sends anything.
	dial(t, "tcp", addr)
	// A client that sends half a line and stalls.
	stalled := dial(t, "tcp", addr)
	_, _ = stalled.Write([]byte("<13>Nov 26 06:00:00 host app: never finish"))

	good := dial(t, "tcp", addr)
	var sent []string
	var buf bytes.Buffer
	for i := range 50 {
		line := fmt.Sprintf("<13>Nov 26 06:00:00 host app: good %d", i)
		sent = append(sent, line)
		buf.WriteString(line + "\n")
		switch i {
		case 10:
			buf.WriteString(strings.Repeat("A", 5000) + "\n") // over max_message_size
		case 20:
			buf.WriteString("\n\n") // empty lines
		case 30:
			garbage := "\xff\xfe\x00\x01binary\x00"
			sent = append(sent, garbage) // kept as bytes, classified later
			buf.WriteString(garbage + "\n")
		}
	}
	if _, err := good.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	_ = good.Close()

	got := r.WaitRecords(t, len(sent))
	if strings.Join(got, "\n") != strings.Join(sent, "\n") {
		t.Errorf("records = %q,\nwant %q", got, sent)
	}
	bustest.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := r.Connections(); n != 2 {
			return fmt.Errorf("open connections = %v, want the idle and the stalled one", n)
		}
		return nil
	})
	for reason, want := range map[string]float64{"too_long": 1, "empty": 2} {
		if n := r.Rejected(reason); n != want {
			t.Errorf("rejected %s = %v, want %v", reason, n, want)
		}
	}
}

func TestOctetCountedAndNewlineConnectionsAreReadSideBySide(t *testing.T) {
	r := receivertest.New(t)
	s := startSyslog(t, r, func(o *receiver.SyslogOptions) { o.TCP = "127.0.0.1:0" })
	addr := s.TCPAddress().String()
	octet, lines := dial(t, "tcp", addr), dial(t, "tcp", addr)
	multi := "<13>1 2026-11-26T06:00:00Z host app - - - first line\nsecond line"
	for _, m := range []string{"<13>1 2026-11-26T06:00:00Z host app - - - octet 1", multi} {
		fmt.Fprintf(octet, "%d %s", len(m), m)
	}
	fmt.Fprintf(lines, "<13>Nov 26 06:00:00 host app: line 1\n")
	_ = octet.Close()
	_ = lines.Close()
	got := r.WaitRecords(t, 3)
	want := map[string]bool{"<13>1 2026-11-26T06:00:00Z host app - - - octet 1": true, multi: true, "<13>Nov 26 06:00:00 host app: line 1": true}
	for _, g := range got {
		if !want[g] {
			t.Errorf("unexpected record %q", g)
		}
		delete(want, g)
	}
	if len(want) > 0 {
		t.Errorf("missing %v", want)
	}
}

func TestAWrongOctetCountClosesTheConnectionButKeepsEarlierRecords(t *testing.T) {
	r := receivertest.New(t)
	s := startSyslog(t, r, func(o *receiver.SyslogOptions) { o.TCP = "127.0.0.1:0" })
	c := dial(t, "tcp", s.TCPAddress().String())
	_, _ = fmt.Fprintf(c, "5 good1"+"5 good2"+"3 <13>short"+"5 never")
	// The receiver closes its side: the read sees the end.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("the connection stayed open after its framing broke")
	}
	got := r.WaitRecords(t, 2)
	// A count too small cuts its record (taken as counted); what is left
	// of it where the next count belongs breaks the framing.
	if strings.Join(got, "|") != "good1|good2|<13" {
		t.Errorf("records = %q", got)
	}
	if n := r.Rejected(receiver.RejectBadFrame); n != 1 {
		t.Errorf("rejections = %v, want the broken frame counted once", n)
	}
	// Other connections go on.
	c2 := dial(t, "tcp", s.TCPAddress().String())
	_, _ = fmt.Fprintf(c2, "5 good3")
	_ = c2.Close()
	r.WaitRecords(t, 4)
}

func TestConnectionsBeyondTheLimitAreRefusedAndCounted(t *testing.T) {
	r := receivertest.New(t)
	s := startSyslog(t, r, func(o *receiver.SyslogOptions) { o.TCP, o.MaxConnections = "127.0.0.1:0", 2 })
	addr := s.TCPAddress().String()
	a, b := dial(t, "tcp", addr), dial(t, "tcp", addr)
	bustest.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n := r.Connections(); n != 2 {
			return fmt.Errorf("%v connections open", n)
		}
		return nil
	})
	third := dial(t, "tcp", addr)
	_ = third.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := third.Read(make([]byte, 1)); err == nil {
		t.Fatal("a third connection was served")
	}
	if n := r.Rejected("max_connections"); n != 1 {
		t.Errorf("rejected max_connections = %v", n)
	}
	fmt.Fprintf(a, "a\n")
	fmt.Fprintf(b, "b\n")
	_ = a.Close()
	_ = b.Close()
	r.WaitRecords(t, 2)
}

func TestDatagramsOverUDPAndUnixSockets(t *testing.T) {
	r := receivertest.New(t)
	sock := t.TempDir() + "/log"
	s := startSyslog(t, r, func(o *receiver.SyslogOptions) {
		o.UDP, o.Unix, o.MaxMessageSize = "127.0.0.1:0", sock, 100
	})
	u := dial(t, "udp", s.UDPAddress().String())
	x := dial(t, "unixgram", sock)
	for _, d := range []string{"<13>udp one\n", "", strings.Repeat("L", 101)} {
		_, _ = u.Write([]byte(d))
	}
	for _, d := range []string{"<13>unix one\x00", strings.Repeat("L", 300)} {
		_, _ = x.Write([]byte(d))
	}
	evs := func() []*schemas.Event {
		var evs []*schemas.Event
		bustest.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
			if evs = r.Events(t); len(evs) < 2 {
				return fmt.Errorf("%d records", len(evs))
			}
			return nil
		})
		return evs
	}()
	peers := map[string]string{}
	for _, ev := range evs {
		peers[string(ev.Raw)] = ev.Peer
	}
	if !strings.HasPrefix(peers["<13>udp one"], "127.0.0.1:") || peers["<13>unix one"] != "unix:"+sock || len(peers) != 2 {
		t.Errorf("records and peers = %q", peers)
	}
	bustest.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
		if a, b := r.Rejected("too_long"), r.Rejected("empty"); a != 2 || b != 1 {
			return fmt.Errorf("rejected too_long %v, empty %v; want 2 and 1", a, b)
		}
		return nil
	})
}

func TestUnixStreamSocketsTakeNULOrLFTerminatedRecords(t *testing.T) {
	r := receivertest.New(t)
	sock := t.TempDir() + "/log.stream"
	startSyslog(t, r, func(o *receiver.SyslogOptions) { o.UnixStream = sock })
	c := dial(t, "unix", sock)
	_, _ = c.Write([]byte("<13>Nov 26 06:00:00 app: glibc style\x00<13>Nov 26 06:00:01 app: lf style\n"))
	_ = c.Close()
	got := r.WaitRecords(t, 2)
	if strings.Join(got, "|") != "<13>Nov 26 06:00:00 app: glibc style|<13>Nov 26 06:00:01 app: lf style" {
		t.Errorf("records = %q", got)
	}
}

func TestAStaleSocketFileIsReplacedButALiveOneOrOtherFilesAreNot(t *testing.T) {
	dir := t.TempDir()
	stale := dir + "/stale"
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: stale, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	_ = ln.Close() // leaves the file behind, as a killed process does
	r := receivertest.New(t)
	startSyslog(t, r, func(o *receiver.SyslogOptions) { o.Unix = stale })

	plain := dir + "/plain"
	if err := os.WriteFile(plain, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := receiver.DefaultSyslogOptions()
	o.Unix = plain
	s, err := receiver.NewSyslog(receivertest.New(t).Env, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err == nil {
		s.Shutdown(context.Background())
		t.Fatal("a regular file was replaced by a socket")
	}

	live := dir + "/live"
	ln, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: live, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	o.Unix = live
	if s, err = receiver.NewSyslog(receivertest.New(t).Env, o); err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err == nil {
		s.Shutdown(context.Background())
		t.Fatal("a socket another process serves was taken over")
	}
}

func TestShutdownDeliversWhatWasSentBeforeIt(t *testing.T) {
	r := receivertest.New(t)
	o := receiver.DefaultSyslogOptions()
	o.TCP = "127.0.0.1:0"
	s, err := receiver.NewSyslog(r.Env, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	s.Serve()
	c := dial(t, "tcp", s.TCPAddress().String())
	var buf bytes.Buffer
	for i := range 1000 {
		fmt.Fprintf(&buf, "line %d\n", i)
	}
	if _, err := c.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	// What is promised is the drain of accepted connections; wait until
	// this one is accepted (a connection still in the kernel's backlog at
	// shutdown is refused, as by any daemon that stops listening).
	for deadline := time.Now().Add(5 * time.Second); r.Connections() < 1 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.Shutdown(ctx) // the client never closes: the grace period ends the read
	if err := r.Env.Batcher.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(r.Records(t)); n != 1000 {
		t.Errorf("%d records stored, want 1000", n)
	}
}
