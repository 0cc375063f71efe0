package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/herald-router/herald/actors/sink/syslog/rsyslogtest"
)

// netLine is the part of a file sink's JSON line the intake tests check.
type netLine struct {
	Time    time.Time `json:"time"`
	Host    string    `json:"host"`
	Service string    `json:"service"`
	Class   string    `json:"class"`
	Source  string    `json:"source"`
	Message string    `json:"message"`
}

// netConfig is a herald with the network receivers under test and one
// file sink.
type netConfig struct {
	NATSPort, MetricsPort int
	Syslog, RELP          int    // ports; 0 leaves the receiver out
	Unix, UnixStream      string // socket paths
}

var netTemplate = template.Must(template.New("intake").Parse(`# written by herald's e2e intake tests
log: {level: info, format: text}
bus:
  embedded: {listen: 127.0.0.1:{{.NATSPort}}, data_dir: nats}
  ack_wait: 5s
metrics: {listen: 127.0.0.1:{{.MetricsPort}}}
shutdown_timeout: 30s
receivers:
{{- if .Syslog}}
  syslog:
    type: syslog
    tcp: 127.0.0.1:{{.Syslog}}
    udp: 127.0.0.1:{{.Syslog}}
{{- if .Unix}}
    unix: {{.Unix}}
    unix_stream: {{.UnixStream}}
{{- end}}
{{- end}}
{{- if .RELP}}
  relp: {type: relp, listen: 127.0.0.1:{{.RELP}}}
{{- end}}
targets:
  log: {bit: 4, sinks: [events]}
sinks:
  events: {type: file, path: out/events.jsonl, format: json}
`))

var netKey = regexp.MustCompile(`\bk-[a-z0-9]+-\d+\b`)

// netSink reads the sink, keyed by the k-<sender>-<n> word of each
// message, keeping each key's last event.
func netSink(dir string) (*sinkFile, map[string]netLine) {
	events := map[string]netLine{}
	return newSinkFile(filepath.Join(dir, "out", "events.jsonl"), func(line []byte) (string, error) {
		var ev netLine
		if err := json.Unmarshal(line, &ev); err != nil {
			return "", err
		}
		k := netKey.FindString(ev.Message)
		if k == "" {
			return "", fmt.Errorf("no key in message %q", ev.Message)
		}
		events[k] = ev
		return k, nil
	}), events
}

// waitNetKeys polls the sink until every expected key is there, failing with
// what is missing after timeout, and then checks that none came twice.
func waitNetKeys(t testing.TB, h *proc, sink *sinkFile, want map[string]bool, timeout time.Duration, dupsOK bool) {
	t.Helper()
	eventually(t, timeout, 50*time.Millisecond, func() error {
		if h != nil && h.exited() {
			t.Fatalf("herald exited with code %d", h.exitCode)
		}
		if err := sink.poll(); err != nil {
			return err
		}
		if tl := sink.tally(want); len(tl.missing) > 0 {
			return fmt.Errorf("%d of %d records missing, e.g. %s", len(tl.missing), len(want), firstFew(tl.missing, 5))
		}
		return nil
	})
	tl := sink.tally(want)
	if sink.nbad > 0 {
		t.Errorf("%d sink lines unreadable, e.g. %q", sink.nbad, sink.bad)
	}
	if len(tl.unexpected) > 0 {
		t.Errorf("unexpected records: %s", firstFew(tl.unexpected, 5))
	}
	if tl.duplicates > 0 && !dupsOK {
		t.Errorf("%d records arrived more than once, e.g. %s", tl.duplicates, firstFew(tl.dupKeys, 5))
	}
}

// checkNetEvents compares each event's envelope with what its sender meant.
func checkNetEvents(t testing.TB, events map[string]netLine, keys map[string]bool, host, service, class, source string, from, to time.Time) {
	t.Helper()
	bad := 0
	for k := range keys {
		ev := events[k]
		var why string
		switch {
		case ev.Host != host:
			why = fmt.Sprintf("host %q, want %q", ev.Host, host)
		case ev.Service != service:
			why = fmt.Sprintf("service %q, want %q", ev.Service, service)
		case ev.Class != class:
			why = fmt.Sprintf("class %q, want %q", ev.Class, class)
		case ev.Source != source:
			why = fmt.Sprintf("source %q, want %q", ev.Source, source)
		case ev.Time.Before(from) || ev.Time.After(to):
			why = fmt.Sprintf("time %s, not within %s .. %s", ev.Time, from, to)
		}
		if why != "" {
			if bad++; bad <= 3 {
				t.Errorf("%s: %s (message %q)", k, why, ev.Message)
			}
		}
	}
	if bad > 3 {
		t.Errorf("... %d events wrong in all", bad)
	}
}

// runNetLogger runs util-linux logger with args, one message per stdin line.
func runNetLogger(t testing.TB, args []string, lines []string) {
	t.Helper()
	cmd := exec.Command("logger", args...)
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("logger %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func TestLoggerOverTCPUDPAndUnixSocketsArrivesOnce(t *testing.T) {
	if _, err := exec.LookPath("logger"); err != nil {
		t.Fatalf("logger not found (Debian package bsdutils, see deploy/ci/deps.sh): %v", err)
	}
	dir := t.TempDir()
	c := netConfig{NATSPort: freePort(t), MetricsPort: freePort(t), Syslog: freePort(t),
		Unix: filepath.Join(dir, "log"), UnixStream: filepath.Join(dir, "log.stream")}
	h := startHerald(t, "herald", writeTemplate(t, dir, netTemplate, c), c.MetricsPort)
	h.waitReady(30 * time.Second)
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	port := fmt.Sprint(c.Syslog)
	const n = 200
	sink, events := netSink(dir)
	all := map[string]bool{}
	for _, tc := range []struct {
		name  string
		args  []string
		class string
		host  string
	}{
		{"tcp", []string{"-n", "127.0.0.1", "-P", port, "-T"}, "rfc5424", host},
		{"tcpoctet", []string{"-n", "127.0.0.1", "-P", port, "-T", "--octet-count"}, "rfc5424", host},
		{"udp", []string{"-n", "127.0.0.1", "-P", port, "-d"}, "rfc5424", host},
		// logger writes the local socket in the BSD format without a
		// HOSTNAME, as glibc's syslog(3) does.
		{"unix", []string{"-u", c.Unix, "-d"}, "rfc3164", ""},
		{"unixstream", []string{"-u", c.UnixStream, "-T"}, "rfc3164", ""},
		{"unix5424", []string{"-u", c.Unix, "-d", "--rfc5424"}, "rfc5424", host},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := map[string]bool{}
			var lines []string
			for i := range n {
				k := fmt.Sprintf("k-%s-%d", tc.name, i)
				want[k], all[k] = true, true
				lines = append(lines, k+" sent by logger over "+tc.name)
			}
			from := time.Now().Add(-time.Second)
			runNetLogger(t, append(tc.args, "-t", "e2e-"+tc.name), lines)
			to := time.Now().Add(time.Second)
			waitNetKeys(t, h, sink, all, 30*time.Second, false)
			checkNetEvents(t, events, want, tc.host, "e2e-"+tc.name, tc.class, "syslog", from.Truncate(time.Second), to)
		})
	}
}

// netRsyslogLines are n lines for an rsyslog sender's input, from host
// fwdhost and app fwdapp, stamped at: RFC 5424, or with bsd RFC 3164 (whose
// stamp has whole seconds and rsyslog's local zone).
func netRsyslogLines(sender string, first, n int, at time.Time, bsd bool) (lines []string, keys map[string]bool) {
	keys = map[string]bool{}
	for i := first; i < first+n; i++ {
		k := fmt.Sprintf("k-%s-%d", sender, i)
		keys[k] = true
		if bsd {
			lines = append(lines, fmt.Sprintf("<134>%s fwdhost fwdapp[4711]: %s forwarded by rsyslog", at.Format(time.Stamp), k))
			continue
		}
		lines = append(lines, fmt.Sprintf("<134>1 %s fwdhost fwdapp 4711 - - %s forwarded by rsyslog",
			at.UTC().Format("2006-01-02T15:04:05.000000Z07:00"), k))
	}
	return lines, keys
}

// omrelpWindow. librelp corks its socket (TCP_CORK) while omrelp sends a
// batch; with a window no larger than the action's batch (128 both, by
// default) it waits for answers with its last frames still corked, which
// the kernel releases only after 200 ms: about 640 records/s, against any
// RELP server, rsyslog's imrelp included. A window above the batch size
// ends each batch (and uncorks) before the window fills. The tests set
// windowSize="1024", as docs should tell operators.

func TestRsyslogForwardsOverOctetCountedTCPAndRELP(t *testing.T) {
	dir := t.TempDir()
	c := netConfig{NATSPort: freePort(t), MetricsPort: freePort(t), Syslog: freePort(t), RELP: freePort(t)}
	h := startHerald(t, "herald", writeTemplate(t, dir, netTemplate, c), c.MetricsPort)
	h.waitReady(30 * time.Second)
	omfwd := rsyslogtest.StartSender(t, fmt.Sprintf(`action(type="omfwd" target="127.0.0.1" port="%d" protocol="tcp" TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")`, c.Syslog))
	omrelp := rsyslogtest.StartSender(t, fmt.Sprintf(`action(type="omrelp" target="127.0.0.1" port="%d" windowSize="1024")`, c.RELP), "omrelp")

	const n = 2000
	at := time.Now().Truncate(time.Millisecond)
	sink, events := netSink(dir)
	fwdLines, fwdKeys := netRsyslogLines("omfwd", 0, n, at, false)
	// rsyslog builds the TAG of an RFC 5424 record without the colon the
	// BSD format needs, so the RELP sender gets BSD lines.
	bsdAt := at.Truncate(time.Second)
	relpLines, relpKeys := netRsyslogLines("omrelp", 0, n, bsdAt, true)
	if err := omfwd.Send(fwdLines...); err != nil {
		t.Fatal(err)
	}
	if err := omrelp.Send(relpLines...); err != nil {
		t.Fatal(err)
	}
	all := map[string]bool{}
	for k := range fwdKeys {
		all[k] = true
	}
	for k := range relpKeys {
		all[k] = true
	}
	waitNetKeys(t, h, sink, all, 60*time.Second, false)
	// omfwd sends RFC 5424 (SyslogProtocol23Format); omrelp rsyslog's
	// forward format, RFC 3164 with an RFC 3339 stamp and zone.
	checkNetEvents(t, events, fwdKeys, "fwdhost", "fwdapp", "rfc5424", "syslog", at, at)
	checkNetEvents(t, events, relpKeys, "fwdhost", "fwdapp", "rfc3164", "relp", bsdAt, bsdAt)
}

func TestRELPSenderLosesNothingWhenHeraldIsKilled(t *testing.T) {
	dir := t.TempDir()
	c := netConfig{NATSPort: freePort(t), MetricsPort: freePort(t), RELP: freePort(t)}
	cfg := writeTemplate(t, dir, netTemplate, c)
	h := startHerald(t, "herald-1", cfg, c.MetricsPort)
	h.waitReady(30 * time.Second)
	sender := rsyslogtest.StartSender(t, fmt.Sprintf(`action(type="omrelp" target="127.0.0.1" port="%d" windowSize="1024" action.resumeRetryCount="-1" action.resumeInterval="1")`, c.RELP), "omrelp")

	const total, chunk = 30000, 200
	at := time.Now().Truncate(time.Millisecond)
	sink, _ := netSink(dir)
	all := map[string]bool{}
	var chunks [][]string
	for first := 0; first < total; first += chunk {
		lines, keys := netRsyslogLines("relp", first, chunk, at, false)
		chunks = append(chunks, lines)
		for k := range keys {
			all[k] = true
		}
	}
	// rsyslog is fed a steady stream the whole time; herald is killed and
	// restarted in the middle of it.
	sendErr := make(chan error, 1)
	go func() {
		for _, lines := range chunks {
			if err := sender.Send(lines...); err != nil {
				sendErr <- err
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		sendErr <- nil
	}()
	eventually(t, 30*time.Second, 2*time.Millisecond, func() error {
		if err := sink.poll(); err != nil {
			return err
		}
		if sink.distinct() < total/6 {
			return fmt.Errorf("%d records in the sink", sink.distinct())
		}
		return nil
	})
	h.kill()
	killedAt := time.Now()
	atKill := sink.distinct()
	h = startHerald(t, "herald-2", cfg, c.MetricsPort)
	h.waitReady(30 * time.Second)
	t.Logf("herald restarted %s after the kill", time.Since(killedAt).Round(time.Millisecond))
	select {
	case err := <-sendErr:
		if err != nil {
			t.Fatal(err)
		}
		t.Fatal("rsyslog's input took everything before herald was back: the kill was not mid-stream")
	default:
	}
	if err := <-sendErr; err != nil {
		t.Fatal(err)
	}
	waitNetKeys(t, h, sink, all, 120*time.Second, true)
	t.Logf("every record in the sink %s after the kill", time.Since(killedAt).Round(time.Millisecond))
	tl := sink.tally(all)
	t.Logf("killed herald with %d of %d records in the sink; after the restart all %d arrived, %d twice (RELP resends what was not acknowledged)",
		atKill, total, total, tl.duplicates)
}
