package http

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/actors/receiver"
	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/bus/bustest"
	"github.com/herald-router/herald/internal/metrics"
	"github.com/herald-router/herald/schemas"
)

// streamEvents reads every event stored on a stream so far.
func streamEvents(t *testing.T, b *bus.Bus, stream string) []*schemas.Event {
	t.Helper()
	ctx := context.Background()
	st, err := b.JS.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*schemas.Event
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var bt schemas.Batch
		if err := proto.Unmarshal(m.Data, &bt); err != nil {
			t.Fatal(err)
		}
		out = append(out, bt.Events...)
	}
	return out
}

func start(t *testing.T, b *bus.Bus, edit func(o *Options)) (*Receiver, string) {
	t.Helper()
	o := DefaultOptions()
	o.Listen = "127.0.0.1:0"
	if edit != nil {
		edit(o)
	}
	if errs := o.Validate(); len(errs) > 0 {
		t.Fatalf("options: %v", errs)
	}
	m := metrics.New().Stage("receiver.web")
	bt := receiver.NewBatcher(b, bus.RawSubject("web"), 100, 64<<10, 2*time.Millisecond, m, bustest.Logger(t))
	r := New("web", *o, b, bt, m, bustest.Logger(t), 64<<10)
	if err := r.Listen(); err != nil {
		t.Fatal(err)
	}
	r.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r.Shutdown(ctx)
		_ = bt.Close(ctx)
	})
	return r, "http://" + r.Addr().String() + Path
}

func post(t *testing.T, url, ctype, body string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func TestJSONEventsAreStoredOnTheEventsStreamBeforeThe200(t *testing.T) {
	b := bustest.Open(t)
	_, url := start(t, b, nil)
	code, body := post(t, url, "application/x-ndjson",
		`{"message":"disk full","host":"db1","volume":"/var"}`+"\n\n"+`{"message":"audit","class":"audit","target_mask":2}`+"\n")
	if code != 200 || body != `{"accepted":2}` {
		t.Fatalf("answer %d %s", code, body)
	}
	code, body = post(t, url, "application/json", `[{"message":"a"},{"message":"b","service":"cron"}]`)
	if code != 200 || body != `{"accepted":2}` {
		t.Fatalf("answer %d %s", code, body)
	}
	code, _ = post(t, url, "", "{\n  \"message\": \"pretty\"\n}\n")
	if code != 200 {
		t.Fatalf("a pretty-printed object: %d", code)
	}
	// The answer came after the store: the events are there now.
	evs := streamEvents(t, b, bus.StreamEvents)
	var got []string
	for _, ev := range evs {
		got = append(got, fmt.Sprintf("%s/%s/%s/%s/%d", ev.Class, ev.Host, ev.Service, ev.Message, ev.TargetMask))
		if ev.Source != "web" || !strings.HasPrefix(ev.Peer, "127.0.0.1:") {
			t.Errorf("source %q peer %q", ev.Source, ev.Peer)
		}
	}
	want := "app/db1//disk full/4 audit///audit/2 app///a/4 app//cron/b/4 app///pretty/4"
	if strings.Join(got, " ") != want {
		t.Errorf("events\n%s\nwant\n%s", strings.Join(got, " "), want)
	}
}

func TestPlainTextLinesAreRawRecordsForTheClassifier(t *testing.T) {
	b := bustest.Open(t)
	_, url := start(t, b, nil)
	code, body := post(t, url, "text/plain; charset=utf-8", "<13>Nov 26 06:00:00 web1 app: one\n\r\n<13>Nov 26 06:00:01 web1 app: two")
	if code != 200 || body != `{"accepted":2}` {
		t.Fatalf("answer %d %s", code, body)
	}
	evs := streamEvents(t, b, bus.StreamRaw)
	if len(evs) != 2 || string(evs[1].Raw) != "<13>Nov 26 06:00:01 web1 app: two" || evs[0].Source != "web" || evs[0].TargetMask != 4 {
		t.Errorf("raw records %v", evs)
	}
}

func TestBadInputIsRefusedWithTheReasonAndNothingIsStored(t *testing.T) {
	b := bustest.Open(t)
	_, url := start(t, b, func(o *Options) { o.MaxBodySize = 1024; o.MaxMessageSize = 64 })
	for _, tc := range []struct {
		name, ctype, body string
		code              int
		reason            string
	}{
		{"a broken second NDJSON line names the line", "application/x-ndjson", "{\"message\":\"ok\"}\n{\"message\":\n", 400, "line 2"},
		{"an envelope key of the wrong type", "application/json", `{"host":5}`, 400, `key \"host\"`},
		{"a class that cannot be a subject", "application/json", `{"class":"a.b"}`, 400, "class"},
		{"an empty body", "application/json", "  ", 400, "empty body"},
		{"an array of non-objects", "application/json", `[1]`, 400, "want an object"},
		{"a text line over max_message_size", "text/plain", strings.Repeat("x", 65), 400, "max_message_size"},
		{"a body over max_body_size", "text/plain", strings.Repeat("x\n", 600), 413, "body over"},
		{"another content type", "application/xml", "<x/>", 415, "Content-Type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := post(t, url, tc.ctype, tc.body)
			if code != tc.code || !strings.Contains(body, tc.reason) {
				t.Errorf("answer %d %s, want %d with %q", code, body, tc.code, tc.reason)
			}
		})
	}
	if n := len(streamEvents(t, b, bus.StreamEvents)) + len(streamEvents(t, b, bus.StreamRaw)); n != 0 {
		t.Errorf("%d events stored from bad requests", n)
	}
}

func TestABearerTokenIsRequiredWhenSet(t *testing.T) {
	b := bustest.Open(t)
	_, url := start(t, b, func(o *Options) { o.Token = "s3cret" })
	if code, _ := post(t, url, "text/plain", "x"); code != 401 {
		t.Errorf("without token: %d", code)
	}
	if code, _ := post(t, url, "text/plain", "x", "Authorization", "Bearer wrong"); code != 401 {
		t.Errorf("wrong token: %d", code)
	}
	if code, _ := post(t, url, "text/plain", "x", "Authorization", "bearer s3cret"); code != 200 {
		t.Errorf("right token: %d", code)
	}
}

func TestASaturatedReceiverAnswers429AtOnce(t *testing.T) {
	b := bustest.Open(t)
	r, url := start(t, b, func(o *Options) { o.MaxInFlight = 1 })
	// A sender that is slow to send its body holds the only slot.
	slow, err := net.Dial("tcp", r.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fmt.Fprintf(slow, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nabc", Path)
	// Wait until its handler holds the slot: on a loaded machine it may
	// start later than the first of the posts below.
	bustest.Eventually(t, 10*time.Second, 5*time.Millisecond, func() error {
		if len(r.slots) != 1 {
			return fmt.Errorf("the slow sender's request does not hold the slot yet")
		}
		return nil
	})
	var body string
	bustest.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error {
		var code int
		code, body = post(t, url, "text/plain", "y")
		if code != 429 {
			return fmt.Errorf("answer %d %s, want 429 while the slot is held", code, body)
		}
		return nil
	})
	if !strings.Contains(body, "saturated") {
		t.Errorf("429 reason %s", body)
	}
	// The slow sender finishes and gets its 200; then the slot is free.
	fmt.Fprint(slow, "defghij")
	resp, err := http.ReadResponse(bufioReader(slow), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("slow sender: %d", resp.StatusCode)
	}
	if code, _ := post(t, url, "text/plain", "z"); code != 200 {
		t.Errorf("after the slot was freed: %d", code)
	}
}

func TestOptionsAreValidated(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(o *Options)
		field string
	}{
		{"listen is required", func(o *Options) { o.Listen = "" }, fieldListen},
		{"listen is host:port", func(o *Options) { o.Listen = "8080" }, fieldListen},
		{"max_in_flight is at least 1", func(o *Options) { o.MaxInFlight = 0 }, fieldMaxInFlight},
		{"a tiny body limit is refused", func(o *Options) { o.MaxBodySize = 10 }, fieldMaxBodySize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultOptions()
			o.Listen = "127.0.0.1:8080"
			tc.edit(o)
			errs := o.Validate()
			if len(errs) != 1 || errs[0].Field != tc.field {
				t.Errorf("errors %v, want one about %s", errs, tc.field)
			}
		})
	}
}

func bufioReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
