package rsyslogtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// Sender is an rsyslogd that forwards: tests write syslog lines to its TCP
// input (Send) and its ruleset, the action the test gives, forwards them,
// as a real rsyslog forwards to a central collector. It is killed when the
// test ends.
type Sender struct {
	// Dir holds the config, the log and the queue files.
	Dir string
	// Input is the port of its newline-framed TCP input on 127.0.0.1.
	Input int

	t       testing.TB
	logFile string
	cmd     *exec.Cmd
	done    chan struct{}
	conn    net.Conn
}

// StartSender starts rsyslogd whose input's ruleset runs action, rsyslog
// config such as
//
//	action(type="omfwd" target="127.0.0.1" port="5514" protocol="tcp")
//
// modules lists modules the action needs loaded ("omrelp"). The ruleset
// has an in-memory queue, so that a destination that is down holds up
// neither the input nor other tests; make the action retry for ever
// (action.resumeRetryCount="-1") when a test restarts the destination.
func StartSender(t testing.TB, action string, modules ...string) *Sender {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatalf("rsyslogtest: %v", err)
	}
	dir := t.TempDir()
	s := &Sender{Dir: dir, Input: freePort(t, "tcp"), t: t, logFile: filepath.Join(dir, "rsyslogd.log")}
	var b bytes.Buffer
	if err := senderTemplate.Execute(&b, map[string]any{"Dir": dir, "Input": s.Input, "Action": action, "Modules": modules}); err != nil {
		t.Fatalf("rsyslogtest: config: %v", err)
	}
	conf := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(conf, b.Bytes(), 0o600); err != nil {
		t.Fatalf("rsyslogtest: %v", err)
	}
	lf, err := os.OpenFile(s.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("rsyslogtest: %v", err)
	}
	s.cmd = exec.Command(bin, "-n", "-f", conf, "-i", filepath.Join(dir, "rsyslogd.pid"))
	s.cmd.Stdout, s.cmd.Stderr = lf, lf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		_ = lf.Close()
		t.Fatalf("rsyslogtest: start rsyslogd: %v", err)
	}
	s.done = make(chan struct{})
	go func() { _ = s.cmd.Wait(); _ = lf.Close(); close(s.done) }()
	t.Cleanup(func() {
		if s.conn != nil {
			_ = s.conn.Close()
		}
		_ = s.cmd.Process.Kill()
		<-s.done
		if t.Failed() {
			if log, err := os.ReadFile(s.logFile); err == nil && len(log) > 0 {
				t.Logf("sending rsyslogd output:\n%s", log)
			}
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-s.done:
			log, _ := os.ReadFile(s.logFile)
			t.Fatalf("rsyslogtest: sending rsyslogd exited at start:\n%s", log)
		default:
		}
		c, err := net.DialTimeout("tcp", Addr(s.Input), time.Second)
		if err == nil {
			s.conn = c
			return s
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(s.logFile)
			t.Fatalf("rsyslogtest: sending rsyslogd not listening on %d after 15s: %v; its output:\n%s", s.Input, err, log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Send writes lines (each without its LF) to the input, in order.
func (s *Sender) Send(lines ...string) error {
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	_ = s.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := s.conn.Write(b.Bytes()); err != nil {
		return fmt.Errorf("send to rsyslogd's input: %w", err)
	}
	return nil
}

var senderTemplate = template.Must(template.New("sender").Parse(`# written by rsyslogtest (sender)
global(workDirectory="{{.Dir}}" maxMessageSize="64k")
main_queue(queue.type="Direct")
module(load="imtcp")
{{- range .Modules}}
module(load="{{.}}")
{{- end}}
ruleset(name="forward" queue.type="LinkedList" queue.size="200000") {
  {{.Action}}
}
input(type="imtcp" address="127.0.0.1" port="{{.Input}}" ruleset="forward")
`))
