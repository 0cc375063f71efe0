package e2e

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite e2e/testdata/check/*.golden from herald's output")

// The cases are the files in testdata/check: NAME.yaml is a config and
// NAME.golden what `herald check` prints for it (exit code, stdout, stderr,
// with the config's folder written as $DIR). A golden without a yaml is
// the case of a config file that does not exist.
const checkDir = "testdata/check"

// manyProblemsWant lists what many_problems.yaml must report, one entry per
// problem (line and key path): decoding problems (unknown keys, wrong
// types) and problems found by validation alike, since `herald check`
// promises every problem in one run. This is checked apart from the
// golden, so that regenerating the goldens with -update cannot hide a
// problem that is no longer reported.
var manyProblemsWant = []string{
	`2:14: field "log.level"`,
	`4:3: field "bus.embeded"`,
	`6:13: field "bus.ack_wait"`,
	`7:16: field "bus.max_deliver"`,
	`9:11: field "metrics.listen"`,
	`14:10: field "receivers.syslog.udp"`,
	`15:5: field "receivers.syslog.max_conections"`,
	`17:11: field "receivers.other.type"`,
	`20:10: field "targets.log.bit"`,
	`21:21: field "targets.log.sinks[1]"`,
	`24:5: field "sinks.events.path"`,
	`25:13: field "sinks.events.format"`,
}

var problemCount = regexp.MustCompile(`: \d+ problem\(s\)$`)

// problemLines returns the problems herald printed on stderr: one per line,
// without the "herald: " prefix and the closing count.
func problemLines(stderr string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimRight(stderr, "\n"), "\n") {
		l = strings.TrimPrefix(l, "herald: ")
		if l == "" || problemCount.MatchString(l) {
			continue
		}
		out = append(out, l)
	}
	return out
}

func checkCases(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, pat := range []string{"*.yaml", "*.golden"} {
		files, err := filepath.Glob(filepath.Join(checkDir, pat))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			n := strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		t.Fatalf("no cases in %s", checkDir)
	}
	return names
}

func TestCheckReportsEveryProblemWithItsPosition(t *testing.T) {
	heraldBin(t)
	for _, name := range checkCases(t) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, name+".yaml")
			src, err := os.ReadFile(filepath.Join(checkDir, name+".yaml"))
			switch {
			case err == nil:
				if err := os.WriteFile(cfg, src, 0o600); err != nil {
					t.Fatal(err)
				}
			case os.IsNotExist(err): // the missing-file case
			default:
				t.Fatal(err)
			}
			code, stdout, stderr := runCommand(t, dir, 30*time.Second, "check", "--config", cfg)
			stable := func(s string) string { return strings.ReplaceAll(s, dir, "$DIR") }
			got := fmt.Sprintf("# herald check --config $DIR/%s.yaml\nexit %d\n-- stdout --\n%s-- stderr --\n%s",
				name, code, stable(stdout), stable(stderr))
			golden := filepath.Join(checkDir, name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./e2e -run TestCheck -update to write it)", err)
			}
			if got != string(want) {
				t.Errorf("herald check output differs from %s\n--- got ---\n%s--- want ---\n%s", golden, got, want)
			}

			if name == "good" {
				if code != 0 {
					t.Errorf("exit %d for a good config, want 0", code)
				}
				return
			}
			if code == 0 {
				t.Errorf("herald check exited 0 for a broken config")
			}
			problems := problemLines(stderr)
			if len(problems) == 0 {
				t.Errorf("herald check printed no problem on stderr")
			}
			if name == "many_problems" {
				for _, w := range manyProblemsWant {
					if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, ".yaml:"+w+": ") }) {
						t.Errorf("problem %s not reported", w)
					}
				}
				if len(problems) != len(manyProblemsWant) {
					t.Errorf("%d problems reported, want %d:\n%s", len(problems), len(manyProblemsWant), strings.Join(problems, "\n"))
				}
			}

			// herald run must refuse the same file, printing the same problems.
			rcode, _, rstderr := runCommand(t, dir, 30*time.Second, "run", "--config", cfg)
			if rcode == 0 {
				t.Errorf("herald run exited 0 for a broken config")
			}
			if rp := problemLines(rstderr); !slices.Equal(rp, problems) {
				t.Errorf("herald run printed other problems than herald check\n--- run ---\n%s\n--- check ---\n%s",
					strings.Join(rp, "\n"), strings.Join(problems, "\n"))
			}
		})
	}
}
