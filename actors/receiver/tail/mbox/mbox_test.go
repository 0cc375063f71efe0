package mbox

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

const folder = "From alice@example.com Tue Mar 12 10:00:00 2024\n" +
	"Received: from mx.example.com (mx [10.0.0.1]) by mail.example.org; Tue, 12 Mar 2024 10:00:01 +0000\n" +
	"Received: from web1.example.com (web1 [10.0.0.7]) by mx.example.com; Tue, 12 Mar 2024 09:59:59 +0000\n" +
	"From: Alice <alice@example.com>\n" +
	"Subject: =?utf-8?q?caf=C3=A9_is_open?=\n" +
	"Date: Tue, 12 Mar 2024 09:59:58 +0000\n" +
	"Message-Id: <1@web1.example.com>\n" +
	"\n" +
	"From the start.\n" +
	">From quoted once\n" +
	">>From quoted twice\n" +
	"\n" +
	"From root@db1 Tue Mar 12 11:00:00 2024\n" +
	"Received: by db1.example.com (Postfix, from userid 0) id 1; Tue, 12 Mar 2024 11:00:00 +0000\n" +
	"Subject: cron\n" +
	"\n" +
	"done\n"

func split(t *testing.T, in string) []string {
	t.Helper()
	var out []string
	if err := Split(strings.NewReader(in), func(m []byte) error { out = append(out, string(m)); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSplitCutsAtFromLinesAfterAnEmptyLine(t *testing.T) {
	msgs := split(t, folder)
	if len(msgs) != 2 {
		t.Fatalf("%d messages: %q", len(msgs), msgs)
	}
	if !strings.HasSuffix(msgs[0], ">>From quoted twice\n") || !strings.HasPrefix(msgs[1], "From root@db1 ") {
		t.Errorf("messages %q", msgs)
	}
}

func TestAMessageWithoutFromLineIsOneMessage(t *testing.T) {
	msgs := split(t, "Subject: piped\n\nFrom a body line that is not a separator\n")
	if len(msgs) != 1 {
		t.Fatalf("%d messages: %q", len(msgs), msgs)
	}
}

func TestParseTakesHostArrivalDateAndSubject(t *testing.T) {
	for _, tc := range []struct {
		name, msg, host, subject, date string
		arrival                        time.Time
	}{
		{"the sending host is the oldest hop's from host", split(t, folder)[0], "web1.example.com", "café is open",
			"2024-03-12T09:59:58Z", time.Date(2024, 3, 12, 10, 0, 0, 0, time.Local)},
		{"a local submission gives the accepting host", split(t, folder)[1], "db1.example.com", "cron",
			"", time.Date(2024, 3, 12, 11, 0, 0, 0, time.Local)},
		{"without a From_ line the newest Received header gives the arrival",
			"Received: from a.example (a) by b.example; Tue, 12 Mar 2024 12:00:00 +0000\nSubject: s\n\nx\n",
			"a.example", "s", "", time.Date(2024, 3, 12, 12, 0, 0, 0, time.UTC)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := Parse([]byte(tc.msg))
			if m.HeaderErr != nil {
				t.Fatal(m.HeaderErr)
			}
			date := ""
			if !m.Date.IsZero() {
				date = m.Date.UTC().Format(time.RFC3339)
			}
			if m.Host != tc.host || m.Subject != tc.subject || date != tc.date || !m.Arrival.Equal(tc.arrival) {
				t.Errorf("host %q subject %q date %q arrival %s", m.Host, m.Subject, date, m.Arrival)
			}
			if bytes.HasPrefix(m.Raw, []byte("From ")) {
				t.Errorf("raw keeps the From_ line")
			}
		})
	}
}

func TestParseRemovesOneLevelOfMboxrdQuoting(t *testing.T) {
	m := Parse([]byte(split(t, folder)[0]))
	if !bytes.HasSuffix(m.Raw, []byte("\n\nFrom the start.\nFrom quoted once\n>From quoted twice\n")) {
		t.Errorf("raw %q", m.Raw)
	}
	if m.MessageID != "1@web1.example.com" || m.From != "Alice <alice@example.com>" {
		t.Errorf("message id %q from %q", m.MessageID, m.From)
	}
}

func FuzzSplitAndParse(f *testing.F) {
	f.Add([]byte(folder))
	f.Add([]byte("From \n\nFrom x\n>From\n"))
	f.Add([]byte("Subject: =?bad?q?x?=\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		total := 0
		_ = Split(bytes.NewReader(in), func(m []byte) error {
			total += len(m)
			_ = Parse(m)
			return nil
		})
		if total > len(in) {
			t.Fatalf("split gave %d bytes of %d", total, len(in))
		}
	})
}
