// Package pgtest starts a throwaway PostgreSQL server for tests: a fresh
// cluster (initdb) in t.TempDir(), listening on a free 127.0.0.1 port with
// password authentication, stopped when the test ends. It installs
// nothing: the server comes from Debian's postgresql package, which
// deploy/ci/deps.sh installs; a missing server fails the test with that
// reason.
//
// PostgreSQL refuses to run as root, so when the test runs as root the
// server runs as the postgres system user (the package creates it).
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/herald-router/herald/internal/testnet"
)

// Server is one PostgreSQL server of a test.
type Server struct {
	// Port is where it listens on 127.0.0.1; it keeps it across Stop and
	// Start.
	Port int
	// User and Password are the superuser's; Database is the database the
	// DSN names.
	User, Password, Database string
	// Dir holds the cluster (Dir/data), the password file and the log.
	Dir string

	bin  string              // folder of initdb and postgres
	cred *syscall.Credential // whom to run as; nil: as ourselves

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Start creates a cluster and starts the server; t.Cleanup stops it.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := binDir()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	s := &Server{User: "herald", Database: "postgres", Dir: t.TempDir(), bin: bin, Password: randomHex(t)}
	if os.Geteuid() == 0 {
		s.cred, err = postgresUser()
		if err != nil {
			t.Fatalf("pgtest: %v", err)
		}
		if err := s.giveDir(); err != nil {
			t.Fatalf("pgtest: %v", err)
		}
	}
	if err := os.WriteFile(s.PasswordFile(), []byte(s.Password+"\n"), 0o600); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if s.cred != nil {
		if err := os.Chown(s.PasswordFile(), int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			t.Fatalf("pgtest: %v", err)
		}
	}
	// --no-sync: a throwaway cluster need not reach the disk, and syncing
	// it costs seconds. UTF8 and the C locale whatever the machine's
	// locale is, so what the tests check does not depend on it.
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", s.dataDir(), "-U", s.User,
		"--pwfile", s.PasswordFile(), "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync")
	initdb.Dir = s.Dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("pgtest: initdb: %v\n%s", err, out)
	}
	s.Port = freePort(t)
	s.Start(t)
	t.Cleanup(func() {
		s.stop()
		if t.Failed() || os.Getenv("HERALD_PG_LOG") != "" {
			if data, err := os.ReadFile(s.logPath()); err == nil {
				const max = 32 << 10
				if len(data) > max {
					data = data[len(data)-max:]
				}
				t.Logf("---- postgres log (last %d bytes) ----\n%s---- end of postgres log ----", len(data), data)
			}
		}
	})
	return s
}

// DSN is a connection URL for the server.
func (s *Server) DSN() string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", s.User, s.Password, s.Port, s.Database)
}

// DSNWithoutPassword is DSN without the password, for configs that take it
// from PasswordFile.
func (s *Server) DSNWithoutPassword() string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", s.User, s.Port, s.Database)
}

// PasswordFile holds the password and a newline.
func (s *Server) PasswordFile() string { return filepath.Join(s.Dir, "password") }

func (s *Server) dataDir() string { return filepath.Join(s.Dir, "data") }
func (s *Server) logPath() string { return filepath.Join(s.Dir, "postgres.log") }

// Start starts the stopped server again on the same port and data, and
// waits until it accepts connections.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		t.Fatalf("pgtest: server already running")
	}
	logf, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	// No Unix socket: its default folder belongs to the system's own
	// server, and a path in t.TempDir() can pass the 107-byte limit.
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), "-D", s.dataDir(), "-p", strconv.Itoa(s.Port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
		"-c", "max_connections=50", "-c", "shared_buffers=32MB")
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: SIGQUIT is PostgreSQL's immediate shutdown, so a test
	// binary that dies leaves no server behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true, Pdeathsig: syscall.SIGQUIT}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		t.Fatalf("pgtest: start postgres: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
		close(done)
	}()
	s.cmd, s.done = cmd, done

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var last error
	for {
		select {
		case <-done:
			s.cmd = nil
			t.Fatalf("pgtest: postgres exited before accepting connections: %s (log: %s)", cmd.ProcessState, s.logPath())
		default:
		}
		c, err := s.connect(ctx)
		if err == nil {
			_ = c.Close(ctx)
			return
		}
		last = err
		select {
		case <-ctx.Done():
			s.stopLocked()
			t.Fatalf("pgtest: postgres does not accept connections after 30s: %v", last)
		case <-done:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop stops the server the way an operator's fast shutdown does: open
// connections are cut, the server exits, the data stays.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
}

func (s *Server) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked()
}

// stopLocked: s.mu must be held.
func (s *Server) stopLocked() error {
	if s.cmd == nil {
		return nil
	}
	cmd, done := s.cmd, s.done
	s.cmd = nil
	_ = cmd.Process.Signal(syscall.SIGINT) // fast shutdown
	select {
	case <-done:
		return nil
	case <-time.After(30 * time.Second):
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
	return errors.New("postgres did not stop within 30s of SIGINT; killed")
}

// Conn connects to the server; t.Cleanup closes the connection.
func (s *Server) Conn(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := s.connect(ctx)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func (s *Server) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(s.DSN())
	if err != nil {
		return nil, err
	}
	cfg.ConnectTimeout = 2 * time.Second
	return pgx.ConnectConfig(ctx, cfg)
}

// binDir finds the newest installed server's programs.
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("postgres"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("no PostgreSQL server installed: run deploy/ci/deps.sh (Debian package postgresql)")
}

func version(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

func postgresUser() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and PostgreSQL refuses to: no postgres user to run it as (%w); run deploy/ci/deps.sh", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("postgres user has uid %q gid %q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// giveDir hands s.Dir to the postgres user and lets it reach the folder:
// the test's temporary folders are root's and closed to others.
func (s *Server) giveDir() error {
	if err := os.Chown(s.Dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
		return err
	}
	tmp := filepath.Clean(os.TempDir())
	for d := filepath.Dir(s.Dir); strings.HasPrefix(d, tmp+string(filepath.Separator)); d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o011); err != nil {
				return err
			}
		}
	}
	return nil
}

func randomHex(t testing.TB) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return hex.EncodeToString(b)
}

// freePort returns a port free on 127.0.0.1, never the same twice in one
// test binary (a stopped server keeps its port for its restart).
func freePort(t testing.TB) int { t.Helper(); return testnet.FreePort(t) }
