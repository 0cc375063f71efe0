package receiver

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadLinesFramesRecordsAndRejectsBadOnes(t *testing.T) {
	long := strings.Repeat("x", 200)
	huge := strings.Repeat("y", 200<<10) // longer than the reader's buffer
	for _, tc := range []struct {
		name     string
		in       string
		want     []string
		rejected []string
	}{
		{"lines are split on newlines and lose the newline", "a\nb\n", []string{"a", "b"}, nil},
		{"a final line without newline still counts", "a\nb", []string{"a", "b"}, nil},
		{"empty lines are counted as rejected, not passed on", "a\n\n\r\nb\n", []string{"a", "b"}, []string{"empty", "empty"}},
		{"a line over the maximum is rejected whole and the next line survives", "a\n" + long + "\nb\n", []string{"a", "b"}, []string{"too_long"}},
		{"a line larger than the read buffer is rejected once", huge + "\nok\n", []string{"ok"}, []string{"too_long"}},
		{"carriage returns and NUL bytes are data", "a\x00b\r\n", []string{"a\x00b\r"}, nil},
		{"invalid UTF-8 passes through as bytes", "\xff\xfe\n", []string{"\xff\xfe"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got, rejected []string
			err := ReadLines(strings.NewReader(tc.in), 100, func(b []byte) { got = append(got, string(b)) },
				func(r string) { rejected = append(rejected, r) })
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("lines = %q, want %q", got, tc.want)
			}
			if strings.Join(rejected, "|") != strings.Join(tc.rejected, "|") {
				t.Errorf("rejected = %q, want %q", rejected, tc.rejected)
			}
		})
	}
}

func TestReadLinesKeepsLinesSplitAcrossReads(t *testing.T) {
	in := "first line\nsecond line that arrives in pieces\nthird\n"
	var got []string
	err := ReadLines(iotest.OneByteReader(strings.NewReader(in)), 1000, func(b []byte) { got = append(got, string(b)) }, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[1] != "second line that arrives in pieces" {
		t.Fatalf("got %q", got)
	}
}

func TestReadLinesReturnsReadErrors(t *testing.T) {
	boom := errors.New("connection reset")
	var got []string
	err := ReadLines(io.MultiReader(strings.NewReader("a\nb"), iotest.ErrReader(boom)), 100,
		func(b []byte) { got = append(got, string(b)) }, func(string) {})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want %v", err, boom)
	}
	if len(got) != 2 {
		t.Errorf("the lines before the error must be delivered, got %q", got)
	}
}
