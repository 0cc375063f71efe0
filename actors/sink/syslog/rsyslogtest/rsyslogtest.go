// Package rsyslogtest starts a real rsyslog collector for tests: rsyslogd
// in the foreground on its own config, with TCP (octet counting and
// newline framing on one port), UDP, RELP and optionally TLS listeners on
// free 127.0.0.1 ports, writing every message it receives to one file that
// Records reads back. Kill and Start stop and restart it on the same ports,
// for outage tests.
//
// What rsyslog keeps of a message. The output template is
//
//	%pri% TAB %hostname% TAB %app-name% TAB %procid% TAB %msgid% TAB %structured-data% TAB %msg% LF
//
// rsyslog escapes control characters on receipt as '#' and three octal
// digits (LF is "#012", NUL always "#000"); Records undoes that, so a
// message comes back byte for byte, except that text which already held
// '#' and three octal digits of a control character comes back as that
// character. global(maxMessageSize="2m") and imtcp's maxFrameSize let a
// 1 MiB message through (rsyslog's defaults, 8k and 200000, would cut or
// reframe it); a trailing LF is kept (parser.dropTrailingLFOnReception
// off). The main queue is Direct: a message is in the file before imrelp
// acknowledges it, so a RELP-acknowledged message survives even kill -9 of
// rsyslog.
package rsyslogtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// DefaultIDElement is the SD-ID Records takes event ids from, the syslog
// sink's default.
const DefaultIDElement = "herald@32473"

// Options choose the listeners.
type Options struct {
	// TLS adds a TLS listener (imtcp with the gtls driver, anonymous
	// client authentication) whose certificate is signed by a CA written
	// to Server.CAFile.
	TLS bool
	// IDElement is the SD-ID whose id parameter is a record's ID; default
	// DefaultIDElement.
	IDElement string
}

// Server is one rsyslogd the test started.
type Server struct {
	t    testing.TB
	opts Options
	// Dir holds the config, the output, the log and the TLS files.
	Dir string
	// Ports of the listeners on 127.0.0.1; TLS is 0 without Options.TLS.
	TCP, UDP, RELP, TLS int
	// CAFile is the PEM of the CA that signed the TLS listener's
	// certificate (for 127.0.0.1 and localhost).
	CAFile string
	// Out is the file every received message is written to.
	Out string

	conf, pidFile, logFile string
	mu                     sync.Mutex
	cmd                    *exec.Cmd
	done                   chan struct{}
}

// Record is one received message.
type Record struct {
	PRI      int
	Hostname string
	AppName  string
	ProcID   string
	MsgID    string
	SD       string // the structured data as received, "-" for none
	ID       string // the id parameter of the id element, "" if none
	Message  string // unescaped
}

// Binary returns the path of rsyslogd, or an error telling how to get it.
func Binary() (string, error) {
	if p, err := exec.LookPath("rsyslogd"); err == nil {
		return p, nil
	}
	// Debian installs it in /usr/sbin, which is not on every PATH.
	p := "/usr/sbin/rsyslogd"
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("rsyslogd not found: install the Debian packages of deploy/ci/deps.sh (rsyslog, rsyslog-relp, rsyslog-gnutls): %w", err)
	}
	return p, nil
}

// Start starts rsyslogd and waits until it writes what it receives. It is
// killed when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.IDElement == "" {
		opts.IDElement = DefaultIDElement
	}
	dir := t.TempDir()
	s := &Server{
		t: t, opts: opts, Dir: dir,
		TCP: freePort(t, "tcp"), UDP: freePort(t, "udp"), RELP: freePort(t, "tcp"),
		Out:     filepath.Join(dir, "received.log"),
		conf:    filepath.Join(dir, "rsyslog.conf"),
		pidFile: filepath.Join(dir, "rsyslogd.pid"),
		logFile: filepath.Join(dir, "rsyslogd.log"),
	}
	if opts.TLS {
		s.TLS = freePort(t, "tcp")
		if err := s.writeCerts(); err != nil {
			t.Fatalf("rsyslogtest: %v", err)
		}
	}
	var b bytes.Buffer
	if err := confTemplate.Execute(&b, s); err != nil {
		t.Fatalf("rsyslogtest: config: %v", err)
	}
	if err := os.WriteFile(s.conf, b.Bytes(), 0o600); err != nil {
		t.Fatalf("rsyslogtest: %v", err)
	}
	t.Cleanup(func() {
		s.mu.Lock()
		running := s.cmd != nil
		s.mu.Unlock()
		if running {
			s.Kill()
		}
		if t.Failed() {
			if log, err := os.ReadFile(s.logFile); err == nil && len(log) > 0 {
				t.Logf("rsyslogd output:\n%s", log)
			}
		}
	})
	s.Start()
	return s
}

// Addr returns 127.0.0.1:port.
func Addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

var confTemplate = template.Must(template.New("conf").Parse(`# written by rsyslogtest
global(maxMessageSize="2m" workDirectory="{{.Dir}}" parser.dropTrailingLFOnReception="off"
{{- if .TLS}} defaultNetstreamDriverCAFile="{{.Dir}}/ca.pem" defaultNetstreamDriverCertFile="{{.Dir}}/server.pem" defaultNetstreamDriverKeyFile="{{.Dir}}/server.key"{{end}})
main_queue(queue.type="Direct")
module(load="imtcp" maxFrameSize="4000000" maxSessions="1000")
module(load="imudp")
module(load="imrelp")
template(name="rsyslogtest" type="string" string="%pri%\t%hostname%\t%app-name%\t%procid%\t%msgid%\t%structured-data%\t%msg%\n")
ruleset(name="received") {
  action(type="omfile" file="{{.Out}}" template="rsyslogtest")
}
input(type="imtcp" address="127.0.0.1" port="{{.TCP}}" ruleset="received")
input(type="imudp" address="127.0.0.1" port="{{.UDP}}" ruleset="received")
input(type="imrelp" address="127.0.0.1" port="{{.RELP}}" ruleset="received" maxDataSize="2m")
{{- if .TLS}}
input(type="imtcp" address="127.0.0.1" port="{{.TLS}}" ruleset="received" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
{{- end}}
`))

// Start starts rsyslogd (again, after Kill or Stop) on the same ports and
// output file, and waits until it is ready: its TCP listeners accept and a
// probe message sent over TCP reached the output.
func (s *Server) Start() {
	s.t.Helper()
	bin, err := Binary()
	if err != nil {
		s.t.Fatalf("rsyslogtest: %v", err)
	}
	_ = os.Remove(s.pidFile)
	lf, err := os.OpenFile(s.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatalf("rsyslogtest: %v", err)
	}
	cmd := exec.Command(bin, "-n", "-f", s.conf, "-i", s.pidFile)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = lf.Close()
		s.t.Fatalf("rsyslogtest: start rsyslogd: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = lf.Close()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	probe := fmt.Sprintf("rsyslogtest-ready-%d", time.Now().UnixNano())
	deadline := time.Now().Add(15 * time.Second)
	ports := []int{s.TCP, s.RELP}
	if s.TLS != 0 {
		ports = append(ports, s.TLS)
	}
	sent := false
	for {
		select {
		case <-done:
			log, _ := os.ReadFile(s.logFile)
			s.mu.Lock()
			s.cmd = nil
			s.mu.Unlock()
			s.t.Fatalf("rsyslogtest: rsyslogd exited at start:\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(s.logFile)
			s.t.Fatalf("rsyslogtest: rsyslogd not ready after 15s (listening on %v and writing %s); its output:\n%s", ports, s.Out, log)
		}
		if !sent {
			if err := listening(ports); err == nil {
				sent = sendProbe(s.TCP, probe) == nil
			}
		} else if data, err := os.ReadFile(s.Out); err == nil && bytes.Contains(data, []byte(probe)) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func listening(ports []int) error {
	for _, p := range ports {
		c, err := net.DialTimeout("tcp", Addr(p), time.Second)
		if err != nil {
			return err
		}
		_ = c.Close()
	}
	return nil
}

func sendProbe(port int, probe string) error {
	c, err := net.DialTimeout("tcp", Addr(port), time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, err = fmt.Fprintf(c, "<13>1 - - rsyslogtest - - - %s\n", probe)
	return err
}

// Kill kills rsyslogd with SIGKILL and waits until it is gone.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

// Stop stops rsyslogd with SIGTERM (it drains its queue and closes its
// sessions) and waits until it is gone.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

// Pause stops rsyslogd with SIGSTOP: its sockets stay open but nobody
// reads or answers, as with a hung collector. It returns once every thread
// is stopped (a signal is delivered asynchronously). Resume undoes it.
func (s *Server) Pause() {
	s.t.Helper()
	s.send(syscall.SIGSTOP)
	s.mu.Lock()
	pid := s.cmd.Process.Pid
	s.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for !stopped(pid) {
		if time.Now().After(deadline) {
			s.t.Fatalf("rsyslogtest: rsyslogd %d not stopped 5s after SIGSTOP", pid)
		}
		time.Sleep(time.Millisecond)
	}
}

// stopped reports whether every thread of pid is in state T (stopped).
func stopped(pid int) bool {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, task := range tasks {
		stat, err := os.ReadFile(task)
		if err != nil {
			return false
		}
		// The state follows the command name in parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 || i+2 >= len(stat) || stat[i+2] != 'T' {
			return false
		}
	}
	return true
}

// Resume continues a paused rsyslogd.
func (s *Server) Resume() { s.send(syscall.SIGCONT) }

func (s *Server) send(sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		s.t.Fatalf("rsyslogtest: %v: rsyslogd is not running", sig)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("rsyslogtest: %v: %v", sig, err)
	}
}

func (s *Server) signal(sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		s.t.Errorf("rsyslogtest: rsyslogd did not exit within 10s of %v", sig)
	}
}

// Records reads every message received so far, in order; the readiness
// probes are left out.
func (s *Server) Records() ([]Record, error) {
	data, err := os.ReadFile(s.Out)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.Out, err)
	}
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[:i+1] // a line being written is not a record yet
	} else {
		return nil, nil
	}
	var out []Record
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		line := string(data[:i])
		data = data[i+1:]
		parts := strings.SplitN(line, "\t", 7)
		if len(parts) != 7 {
			return out, fmt.Errorf("%s: malformed line %.200q", s.Out, line)
		}
		if parts[2] == "rsyslogtest" {
			continue
		}
		pri, _ := strconv.Atoi(parts[0])
		out = append(out, Record{
			PRI: pri, Hostname: parts[1], AppName: parts[2], ProcID: parts[3], MsgID: parts[4],
			SD: parts[5], ID: sdParam(parts[5], s.opts.IDElement, "id"), Message: Unescape(parts[6]),
		})
	}
	return out, nil
}

// sdParam finds the value of param in the element elem of sd (without
// unescaping: ids need none).
func sdParam(sd, elem, param string) string {
	_, rest, ok := strings.Cut(sd, "["+elem+" ")
	if !ok {
		return ""
	}
	_, rest, ok = strings.Cut(rest, param+`="`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}

// Unescape undoes rsyslog's escaping of control characters on receipt:
// '#' and three octal digits naming a byte below 0x20.
func Unescape(s string) string {
	if !strings.Contains(s, "#") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '#' && isOctal(s, i+1) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil && v < 0x20 {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(s string, i int) bool {
	if i+3 > len(s) {
		return false
	}
	for _, c := range []byte(s[i : i+3]) {
		if c < '0' || c > '7' {
			return false
		}
	}
	return true
}

// WaitFor waits until every id is among the records and returns them all;
// it fails the test after timeout, naming the first ids still missing.
func (s *Server) WaitFor(t testing.TB, ids []string, timeout time.Duration) []Record {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		recs, err := s.Records()
		if err != nil {
			t.Fatalf("rsyslogtest: %v", err)
		}
		seen := make(map[string]bool, len(recs))
		for _, r := range recs {
			seen[r.ID] = true
		}
		var missing []string
		for _, id := range ids {
			if !seen[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 {
			return recs
		}
		if time.Now().After(deadline) {
			if len(missing) > 5 {
				missing = append(missing[:5], fmt.Sprintf("... (%d in all)", len(missing)))
			}
			t.Fatalf("rsyslogtest: after %s rsyslog still lacks %s", timeout, strings.Join(missing, ", "))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var (
	portsMu sync.Mutex
	given   = map[int]bool{}
)

// freePort returns a port free on 127.0.0.1 that this test binary has not
// handed out before.
func freePort(t testing.TB, network string) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 50 {
		var port int
		if network == "udp" {
			c, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatalf("rsyslogtest: free port: %v", err)
			}
			port = c.LocalAddr().(*net.UDPAddr).Port
			_ = c.Close()
		} else {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatalf("rsyslogtest: free port: %v", err)
			}
			port = ln.Addr().(*net.TCPAddr).Port
			_ = ln.Close()
		}
		if !given[port] {
			given[port] = true
			return port
		}
	}
	t.Fatal("rsyslogtest: no free port on 127.0.0.1")
	return 0
}

// writeCerts writes a CA and a server certificate for 127.0.0.1 and
// localhost signed by it.
func (s *Server) writeCerts() error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("ca key: %w", err)
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rsyslogtest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("ca certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return fmt.Errorf("ca certificate: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("server key: %w", err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("server key: %w", err)
	}
	s.CAFile = filepath.Join(s.Dir, "ca.pem")
	for name, block := range map[string]*pem.Block{
		"ca.pem":     {Type: "CERTIFICATE", Bytes: caDER},
		"server.pem": {Type: "CERTIFICATE", Bytes: leafDER},
		"server.key": {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(s.Dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			return err
		}
	}
	return nil
}
