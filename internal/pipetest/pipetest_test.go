package pipetest_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/internal/pipetest"
	"github.com/herald-router/herald/internal/providers"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func kinds() config.Kinds { return providers.Kinds(providers.Registry()) }

// The examples in deploy/tests are run here so that they cannot rot: a
// change to the pipeline that changes what they expect fails make test.
func TestTheExampleTestsInDeployPass(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "deploy", "tests", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no example tests in deploy/tests (%v)", err)
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			rep, err := pipetest.RunFile(path, kinds())
			if err != nil {
				t.Fatal(err)
			}
			if rep.Failed() > 0 {
				var b bytes.Buffer
				rep.Write(&b)
				t.Errorf("example cases fail:\n%s", b.String())
			}
		})
	}
}

// The report is what an operator reads: each failing case names what was
// checked, what was wanted and what came out, with a diff for outputs.
func TestReportsShowEveryMismatchWithADiff(t *testing.T) {
	rep, err := pipetest.RunFile(filepath.Join("testdata", "cases.yaml"), kinds())
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	rep.Write(&b)
	golden := filepath.Join("testdata", "cases.golden")
	if *update {
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if got := b.String(); got != string(want) {
		t.Errorf("report differs from %s (go test -update rewrites it):\n%s", golden, pipetest.Diff(string(want), got))
	}
	if rep.Failed() != len(rep.Results)-3 {
		t.Errorf("%d of %d cases failed, want all but the three passing ones", rep.Failed(), len(rep.Results))
	}
}

func TestBadTestFilesAreRefusedWithTheReason(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"an unknown key is an error, as in a config", "config: c.yaml\ntests:\n  - name: a\n    input: {line: x}\n    expct: {}\n", "field expct not found"},
		{"the config is required", "tests:\n  - name: a\n    input: {line: x}\n", "config: required"},
		{"a file without cases is an error", "config: c.yaml\n", "no cases"},
		{"a case needs a name", "config: c.yaml\ntests:\n  - input: {line: x}\n", "name: required"},
		{"a case needs an input", "config: c.yaml\ntests:\n  - name: a\n", "want line"},
		{"line and event exclude each other", "config: c.yaml\ntests:\n  - name: a\n    input: {line: x, event: {}}\n", "exclude each other"},
		{"an event has no receiver", "config: c.yaml\ntests:\n  - name: a\n    input: {receiver: r, event: {}}\n", "only for a line"},
		{"a line has no class", "config: c.yaml\ntests:\n  - name: a\n    input: {class: c, line: x}\n", "only for an event"},
		{"arrival times are RFC 3339", "config: c.yaml\nreceived: yesterday\ntests:\n  - name: a\n    input: {line: x}\n", "received: want an RFC 3339 time"},
		{"expected fields are a mapping", "config: c.yaml\ntests:\n  - name: a\n    input: {line: x}\n    expect: {fields: [a]}\n", "want a mapping"},
		{"an empty file is an error", "", "empty test file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pipetest.Parse("t.yaml", []byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestAConfigThatDoesNotLoadIsAnErrorNamingIt(t *testing.T) {
	dir := t.TempDir()
	test := filepath.Join(dir, "t.yaml")
	if err := os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("targets: {log: {bit: 3}}\nnope: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(test, []byte("config: bad.yaml\ntests:\n  - name: a\n    input: {line: x}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := pipetest.RunFile(test, kinds())
	if err == nil || !strings.Contains(err.Error(), "bad.yaml") || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("error %v, want the config's problems", err)
	}
}

func TestDiffMarksLinesAndTheFirstDifferentColumn(t *testing.T) {
	for _, tc := range []struct {
		name, want, got, diff string
	}{
		{"one line gets a caret under the first difference", "abcdé", "abXdé", "- abcdé\n+ abXdé\n    ^ column 3"},
		{"lines in common are kept, the others marked", "a\nb\nc", "a\nB\nc\nd", "  a\n- b\n+ B\n  c\n+ d"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := pipetest.Diff(tc.want, tc.got); got != tc.diff {
				t.Errorf("Diff:\n%s\nwant:\n%s", got, tc.diff)
			}
		})
	}
}

// The configs shipped for packaging and as examples must stay loadable as
// the config format evolves.
func TestTheShippedConfigsLoad(t *testing.T) {
	root := filepath.Join("..", "..", "deploy")
	files := []string{filepath.Join(root, "systemd", "herald.yaml"), filepath.Join(root, "container", "herald.yaml")}
	examples, _ := filepath.Glob(filepath.Join(root, "examples", "*.yaml"))
	for _, path := range append(files, examples...) {
		t.Run(filepath.Base(filepath.Dir(path))+"/"+filepath.Base(path), func(t *testing.T) {
			if _, err := config.Load(path, kinds()); err != nil {
				t.Fatal(err)
			}
		})
	}
}
