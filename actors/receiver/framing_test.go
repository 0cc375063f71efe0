package receiver

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// frames runs ReadFrames over in and collects what it emits and rejects.
func frames(t testing.TB, r io.Reader, opts FrameOptions) (got, rejected []string, err error) {
	t.Helper()
	err = ReadFrames(r, opts, func(b []byte) { got = append(got, string(b)) },
		func(reason string) { rejected = append(rejected, reason) })
	return got, rejected, err
}

// octets frames records with octet counting.
func octets(recs ...string) string {
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "%d %s", len(r), r)
	}
	return b.String()
}

// Real lines, as logger, rsyslog and network gear send them.
var realLines = []string{
	`<13>1 2026-11-26T06:14:07.913813+00:00 vm root 4242 - [timeQuality tzKnown="1" isSynced="0"] hello over tcp`,
	`<13>Nov 26 06:14:07 vm root: hello over tcp`,
	`<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8`,
	`<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.`,
	`<189>35: *Apr 29 06:34:27.435: %SYS-5-CONFIG_I: Configured from console by vty0 (10.0.0.1)`,
	`<86>1 2026-01-01T00:00:00Z host sshd 77 - - Accepted publickey for git from 10.1.2.3 port 51234 ssh2`,
	"<13>Nov 26 06:00:00 host app: tab\tand NUL\x00 and \xff\xfe bytes",
}

func TestReadFramesSplitsRecordsAndRejectsBadOnes(t *testing.T) {
	long := strings.Repeat("x", 200)
	huge := strings.Repeat("y", 200<<10) // longer than the read buffer
	for _, tc := range []struct {
		name     string
		in       string
		nul      bool
		want     []string
		rejected []string
		err      error
	}{
		{"lines are split on newlines and lose the newline", "a\nb\n", false, []string{"a", "b"}, nil, nil},
		{"a final line without newline still counts", "a\nb", false, []string{"a", "b"}, nil, nil},
		{"empty lines are counted as rejected, not passed on", "a\n\n\r\nb\n", false, []string{"a", "b"}, []string{"empty", "empty"}, nil},
		{"a line over the maximum is rejected whole and the next line survives", "a\n" + long + "\nb\n", false, []string{"a", "b"}, []string{"too_long"}, nil},
		{"a line larger than the read buffer is rejected once", huge + "\nok\n", false, []string{"ok"}, []string{"too_long"}, nil},
		{"an unterminated line over the maximum at the end is rejected", "a\n" + long, false, []string{"a"}, []string{"too_long"}, nil},
		{"carriage returns and NUL bytes are data in newline framing", "a\x00b\r\n", false, []string{"a\x00b\r"}, nil, nil},
		{"with nul_terminator a NUL ends a record as LF does", "a\x00b\nc\x00", true, []string{"a", "b", "c"}, nil, nil},
		{"invalid UTF-8 passes through as bytes", "\xff\xfe\n", false, []string{"\xff\xfe"}, nil, nil},
		{"a line that starts with a number but no space is newline framed", "2026-11-26 started\n12\n", false, []string{"2026-11-26 started", "12"}, nil, nil},
		{"a leading zero is no octet count", "0 zero\n", false, []string{"0 zero"}, nil, nil},
		{"octet counted frames are read by their length", octets("a b", "c\nd", "e"), false, []string{"a b", "c\nd", "e"}, nil, nil},
		{"octet counted frames may carry newlines between them", octets("one") + "\n" + octets("two") + "\r\n", false, []string{"one", "two"}, nil, nil},
		{"an octet counted frame keeps NUL and LF inside", octets("x\x00y\n"), true, []string{"x\x00y\n"}, nil, nil},
		{"an octet counted frame over the maximum is skipped and framing kept", octets("a", long, "b"), false, []string{"a", "b"}, []string{"too_long"}, nil},
		{"a huge octet counted frame is skipped across reads", octets("a", huge, "b"), false, []string{"a", "b"}, []string{"too_long"}, nil},
		{"a wrong octet count breaks framing after the good records", "3 abc" + "2 de" + "xyz\n", false, []string{"abc", "de"}, []string{"bad_frame"}, ErrBadFrame},
		{"garbage where a length belongs closes after the good records", octets("ok") + "<13>oops", false, []string{"ok"}, []string{"bad_frame"}, ErrBadFrame},
		{"a frame cut short by the end of the stream is counted", octets("ok") + "10 short", false, []string{"ok"}, []string{"truncated"}, ErrBadFrame},
		{"a stream ending inside the length is counted", octets("ok") + "12", false, []string{"ok"}, []string{"truncated"}, ErrBadFrame},
		{"an absurd length is a bad frame", "1234567890123 x", false, []string{"1234567890123 x"}, nil, nil},
		{"an empty stream is no record", "", false, nil, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, rejected, err := frames(t, strings.NewReader(tc.in), FrameOptions{Max: 100, NUL: tc.nul})
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("records = %q, want %q", got, tc.want)
			}
			if strings.Join(rejected, "|") != strings.Join(tc.rejected, "|") {
				t.Errorf("rejected = %q, want %q", rejected, tc.rejected)
			}
		})
	}
}

func TestReadFramesKeepsRecordsSplitAcrossReads(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
	}{
		{"newline framing", strings.Join(realLines, "\n") + "\n"},
		{"octet counting", octets(realLines...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, rejected, err := frames(t, iotest.OneByteReader(strings.NewReader(tc.in)), FrameOptions{Max: 1000})
			if err != nil || len(rejected) > 0 {
				t.Fatalf("err %v, rejected %q", err, rejected)
			}
			if strings.Join(got, "\n") != strings.Join(realLines, "\n") {
				t.Fatalf("got %q", got)
			}
		})
	}
}

func TestReadFramesReturnsReadErrorsAfterTheRecordsBefore(t *testing.T) {
	boom := errors.New("connection reset")
	for _, in := range []string{"a\nb\n", octets("a", "b")} {
		got, _, err := frames(t, io.MultiReader(strings.NewReader(in), iotest.ErrReader(boom)), FrameOptions{Max: 100})
		if !errors.Is(err, boom) {
			t.Fatalf("err = %v, want %v", err, boom)
		}
		if len(got) != 2 {
			t.Errorf("%q: the records before the error must be delivered, got %q", in, got)
		}
	}
}

func TestReadFramesHandlesRecordsUpToTheMaximum(t *testing.T) {
	const max = 1 << 20 // a 1 MiB record, as the issue asks
	rec := strings.Repeat("z", max)
	for _, in := range []string{rec + "\n" + rec + "x\nok\n", octets(rec, rec+"x", "ok")} {
		got, rejected, err := frames(t, strings.NewReader(in), FrameOptions{Max: max})
		if err != nil || len(got) != 2 || got[0] != rec || got[1] != "ok" || strings.Join(rejected, "") != "too_long" {
			t.Fatalf("err %v, %d records, rejected %q", err, len(got), rejected)
		}
	}
}

// FuzzReadFrames checks that no input crashes the parser or yields a
// record it should have refused, and that any records framed either way
// come back as they were.
func FuzzReadFrames(f *testing.F) {
	for _, l := range realLines {
		f.Add([]byte(l+"\n"), false)
		f.Add([]byte(octets(l)), false)
	}
	f.Add([]byte(octets("a", "bc")+"\n5 ab"), true)
	f.Add([]byte("9 \x00\n\n1 x"), true)
	f.Fuzz(func(t *testing.T, in []byte, nul bool) {
		const max = 64
		opts := FrameOptions{Max: max, NUL: nul}
		got, _, _ := frames(t, iotest.HalfReader(bytes.NewReader(in)), opts)
		for _, r := range got {
			if len(r) == 0 || len(r) > max {
				t.Fatalf("emitted a record of %d bytes", len(r))
			}
		}
		// Round trips: split the input into records and frame them.
		var recs []string
		for _, r := range bytes.FieldsFunc(in, func(c rune) bool { return c == '\n' || c == 0 || c == '\r' }) {
			if len(r) <= max {
				recs = append(recs, string(r))
			}
		}
		if len(recs) == 0 {
			return
		}
		back, rejected, err := frames(t, iotest.HalfReader(strings.NewReader(octets(recs...))), opts)
		if err != nil || len(rejected) > 0 || strings.Join(back, "\x00") != strings.Join(recs, "\x00") {
			t.Fatalf("octet counting: %q -> %q (rejected %q, err %v)", recs, back, rejected, err)
		}
		if c := recs[0][0]; c >= '1' && c <= '9' {
			return // newline framing would be read as octet counting: by design
		}
		back, rejected, err = frames(t, iotest.HalfReader(strings.NewReader(strings.Join(recs, "\n")+"\n")), opts)
		if err != nil || len(rejected) > 0 || strings.Join(back, "\x00") != strings.Join(recs, "\x00") {
			t.Fatalf("newline framing: %q -> %q (rejected %q, err %v)", recs, back, rejected, err)
		}
	})
}

func BenchmarkReadFrames(b *testing.B) {
	for _, mode := range []string{"newline", "octet"} {
		b.Run(mode, func(b *testing.B) {
			var in bytes.Buffer
			n := 0
			for in.Len() < 4<<20 {
				l := realLines[n%len(realLines)]
				if mode == "octet" {
					in.WriteString(octets(l))
				} else {
					in.WriteString(strings.ReplaceAll(l, "\x00", " ") + "\n")
				}
				n++
			}
			b.SetBytes(int64(in.Len()))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				count := 0
				_ = ReadFrames(bytes.NewReader(in.Bytes()), FrameOptions{Max: 64 << 10}, func([]byte) { count++ }, func(string) {})
				if count != n {
					b.Fatalf("%d records, want %d", count, n)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
		})
	}
}
