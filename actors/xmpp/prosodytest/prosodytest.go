// Package prosodytest starts a throwaway Prosody XMPP server for tests: its
// own config, data and self-signed certificate in t.TempDir(), listening
// on free 127.0.0.1 ports (STARTTLS and direct TLS), with a PubSub
// component (memory storage) and a MUC component, stopped when the test
// ends. It installs nothing: prosody comes from Debian's package, which
// deploy/ci/deps.sh installs; a missing server fails the test with that
// reason.
//
// The config is the one the XMPP publisher needs to be measured fairly:
// the c2s rate limit Debian ships (10 kB/s, about 33 stanzas/s) is lifted,
// the publisher accounts are admins (on Prosody only admins may create
// PubSub nodes), PubSub items live in memory (the default file store
// rewrites the node's item file on every publish: 20–30 publishes/s),
// and offline messages are kept in memory, so a chat message to a test
// account that is reconnecting is stored rather than bounced.
package prosodytest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/herald-router/herald/internal/testnet"
)

// The names the server serves.
const (
	Domain = "localhost"
	PubSub = "pubsub.localhost"
	MUC    = "conference.localhost"
)

// Options shape a server.
type Options struct {
	// Users are the accounts created (all admins, all exempt from the c2s
	// rate limit). Default pub and sub.
	Users []string
	// C2SRate is the c2s rate limit of accounts not exempt. Default
	// "10mb/s" (Debian ships "10kb/s").
	C2SRate string
}

// Server is one Prosody of a test.
type Server struct {
	// C2S is the client port (STARTTLS offered, plaintext allowed);
	// DirectTLS the XEP-0368 port. Both stay the same across restarts.
	C2S, DirectTLS int
	// Password is every account's password.
	Password string
	// Dir holds the config, the data, the certificate and the log.
	Dir string
	// CAFile is the PEM of the self-signed certificate the server uses for
	// localhost, pubsub.localhost and conference.localhost.
	CAFile string
	Users  []string

	bin, ctl string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	paused bool
}

// Start writes the config and certificate, creates the accounts and starts
// the server; t.Cleanup stops it.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	bin, err := exec.LookPath("prosody")
	if err != nil {
		t.Fatalf("prosodytest: no prosody installed (%v): run deploy/ci/deps.sh (Debian package prosody)", err)
	}
	ctl, err := exec.LookPath("prosodyctl")
	if err != nil {
		t.Fatalf("prosodytest: no prosodyctl installed (%v): run deploy/ci/deps.sh (Debian package prosody)", err)
	}
	if len(o.Users) == 0 {
		o.Users = []string{"pub", "sub"}
	}
	if o.C2SRate == "" {
		o.C2SRate = "10mb/s"
	}
	s := &Server{Dir: t.TempDir(), Password: randomHex(t), Users: o.Users, bin: bin, ctl: ctl}
	s.C2S, s.DirectTLS = freePort(t), freePort(t)
	s.CAFile = filepath.Join(s.Dir, "certs", Domain+".crt")
	if err := writeCert(filepath.Join(s.Dir, "certs")); err != nil {
		t.Fatalf("prosodytest: certificate: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(s.Dir, "data"), 0o750); err != nil {
		t.Fatalf("prosodytest: %v", err)
	}
	if err := s.writeConfig(o); err != nil {
		t.Fatalf("prosodytest: config: %v", err)
	}
	for _, u := range o.Users {
		s.Register(t, u)
	}
	s.Start(t)
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("prosodytest: %v", err)
		}
		if t.Failed() || os.Getenv("HERALD_PROSODY_LOG") != "" {
			if data, err := os.ReadFile(s.logPath()); err == nil {
				const max = 32 << 10
				if len(data) > max {
					data = data[len(data)-max:]
				}
				t.Logf("---- prosody log (last %d bytes) ----\n%s---- end of prosody log ----", len(data), data)
			}
		}
	})
	return s
}

// JID is user's bare JID.
func (s *Server) JID(user string) string { return user + "@" + Domain }

// Addr is the client (STARTTLS) address.
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.C2S) }

// DirectTLSAddr is the direct TLS address.
func (s *Server) DirectTLSAddr() string { return fmt.Sprintf("127.0.0.1:%d", s.DirectTLS) }

// PasswordFile writes the password into a file of the test and returns
// its path.
func (s *Server) PasswordFile(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "xmpp-password")
	if err := os.WriteFile(p, []byte(s.Password+"\n"), 0o600); err != nil {
		t.Fatalf("prosodytest: %v", err)
	}
	return p
}

func (s *Server) configPath() string { return filepath.Join(s.Dir, "prosody.cfg.lua") }
func (s *Server) logPath() string    { return filepath.Join(s.Dir, "prosody.log") }

// Register creates an account (prosodyctl register), an admin like the
// others when it is listed in Options.Users; other accounts are plain.
func (s *Server) Register(t testing.TB, user string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.ctl, "--config", s.configPath(), "register", user, Domain, s.Password)
	cmd.Dir = s.Dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("prosodytest: prosodyctl register %s: %v\n%s", user, err, out)
	}
}

var configTemplate = template.Must(template.New("prosody").Parse(`-- written by prosodytest
run_as_root = true             -- tests run as root; mod_posix refuses root without this
pidfile = "{{.Dir}}/prosody.pid"
data_path = "{{.Dir}}/data"
log = { { levels = { min = "info" }, to = "console" } }
interfaces = { "127.0.0.1" }
c2s_ports = { {{.C2S}} }                 -- STARTTLS offered, not required
c2s_direct_tls_ports = { {{.DirectTLS}} } -- XEP-0368
s2s_ports = { }
component_ports = { }
http_ports = { }
https_ports = { }
admins = { {{range $i, $u := .Admins}}{{if $i}}, {{end}}"{{$u}}"{{end}} } -- only admins may create pubsub nodes
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "posix"; "limits"; "offline" }
modules_disabled = { "s2s" }
authentication = "internal_hashed"
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
certificates = "{{.Dir}}/certs"
default_storage = "internal"
storage = { offline = "memory" }          -- messages to an account that is reconnecting
storage_archive_item_limit = 1000000      -- the memory store refuses (quota-limit) past 1000 items per node
limits = { c2s = { rate = "{{.C2SRate}}"; burst = "2s" } }  -- Debian's default is "10kb/s"
unlimited_jids = { {{range $i, $u := .Admins}}{{if $i}}, {{end}}"{{$u}}"{{end}} }
VirtualHost "{{.Domain}}"
Component "{{.PubSub}}" "pubsub"
  storage = "memory"                    -- the file store rewrites the item file per publish
  pubsub_max_items = 100000
Component "{{.MUC}}" "muc"
  muc_room_locking = false
  restrict_room_creation = false
  max_history_messages = 10000
  muc_room_default_history_length = 10000
`))

func (s *Server) writeConfig(o Options) error {
	var admins []string
	for _, u := range o.Users {
		admins = append(admins, s.JID(u))
	}
	var b bytes.Buffer
	err := configTemplate.Execute(&b, map[string]any{
		"Dir": s.Dir, "C2S": s.C2S, "DirectTLS": s.DirectTLS, "Admins": admins, "C2SRate": o.C2SRate,
		"Domain": Domain, "PubSub": PubSub, "MUC": MUC,
	})
	if err != nil {
		return err
	}
	return os.WriteFile(s.configPath(), b.Bytes(), 0o600)
}

// Start starts the stopped (or killed) server again on the same ports
// and waits until it accepts connections.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		t.Fatalf("prosodytest: server already running")
	}
	// A stale listener would answer the readiness probe while the new
	// server quits with "port in use".
	for _, p := range []int{s.C2S, s.DirectTLS} {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), time.Second); err == nil {
			_ = c.Close()
			t.Fatalf("prosodytest: port %d is already in use", p)
		}
	}
	logf, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("prosodytest: %v", err)
	}
	cmd := exec.Command(s.bin, "-F", "--config", s.configPath())
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: a test binary that dies leaves no server behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		t.Fatalf("prosodytest: start prosody: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
		close(done)
	}()
	s.cmd, s.done, s.paused = cmd, done, false

	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-done:
			s.cmd = nil
			t.Fatalf("prosodytest: prosody exited before listening: %s (log: %s)", cmd.ProcessState, s.logPath())
		default:
		}
		if ready(s.C2S) && ready(s.DirectTLS) {
			return
		}
		if time.Now().After(deadline) {
			_ = s.killLocked()
			t.Fatalf("prosodytest: prosody not listening on %d and %d after 20s (log: %s)", s.C2S, s.DirectTLS, s.logPath())
		}
		select {
		case <-done:
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func ready(port int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// Pid is the running server's process id, 0 when it is not running.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Stop stops the server with SIGTERM (streams are closed with a stream
// error) and waits for it to exit.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Fatalf("prosodytest: %v", err)
	}
}

func (s *Server) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	cmd, done := s.cmd, s.done
	if s.paused {
		_ = cmd.Process.Signal(syscall.SIGCONT)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		s.cmd = nil
		return nil
	case <-time.After(10 * time.Second):
	}
	_ = s.killLocked()
	return errors.New("prosody did not stop within 10s of SIGTERM; killed")
}

// Kill kills the server with SIGKILL, as a crash would, and waits for it
// to be gone. PubSub nodes and items, rooms and offline messages are in
// memory: a restarted server has none.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.killLocked(); err != nil {
		t.Fatalf("prosodytest: %v", err)
	}
}

// killLocked: s.mu must be held.
func (s *Server) killLocked() error {
	if s.cmd == nil {
		return nil
	}
	cmd, done := s.cmd, s.done
	s.cmd = nil
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("prosody did not die within 10s of SIGKILL")
	}
}

// Pause stops the server with SIGSTOP: connections stay open, nothing is
// read or answered, as with a hung server or a network partition.
func (s *Server) Pause(t testing.TB) {
	t.Helper()
	s.signal(t, syscall.SIGSTOP, true)
}

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume(t testing.TB) {
	t.Helper()
	s.signal(t, syscall.SIGCONT, false)
}

func (s *Server) signal(t testing.TB, sig syscall.Signal, paused bool) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		t.Fatalf("prosodytest: %v: server not running", sig)
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("prosodytest: %v: %v", sig, err)
	}
	s.paused = paused
}

// writeCert writes a self-signed certificate and key for the server's
// names: localhost.crt and localhost.key, where prosody looks for them.
func writeCert(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: Domain},
		DNSNames:              []string{Domain, PubSub, MUC},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	crt := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	k := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	if err := os.WriteFile(filepath.Join(dir, Domain+".crt"), crt, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, Domain+".key"), k, 0o600)
}

func randomHex(t testing.TB) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("prosodytest: %v", err)
	}
	return hex.EncodeToString(b)
}

// freePort returns a port free on 127.0.0.1, never the same twice in one
// test binary (a stopped server keeps its port for its restart).
func freePort(t testing.TB) int { t.Helper(); return testnet.FreePort(t) }
