package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// heraldBin returns the absolute path of the built binary, or fails the
// test telling how to build it.
func heraldBin(t testing.TB) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "bin", "herald"))
	if err != nil {
		t.Fatalf("path of herald binary: %v", err)
	}
	if st, err := os.Stat(p); err != nil || st.IsDir() {
		t.Fatalf("herald binary %s not found: run make build first (%v)", p, err)
	}
	return p
}

// eventually calls f every `every` until it returns nil, and fails the test
// with f's last answer (what it is still waiting for) after timeout.
func eventually(t testing.TB, timeout, every time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after %s: %v", timeout, err)
		}
		time.Sleep(every)
	}
}

var (
	portsMu sync.Mutex
	// portsGiven keeps freePort from handing out one number twice in this
	// test binary, even after the first holder closed it.
	portsGiven = map[int]bool{}
)

// freePort returns a port free on 127.0.0.1 for both TCP and UDP: it binds
// port 0, checks the UDP side too, closes both and hands out the number.
func freePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		uc, uerr := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		_ = ln.Close()
		if uerr != nil {
			continue
		}
		_ = uc.Close()
		if portsGiven[port] {
			continue
		}
		portsGiven[port] = true
		return port
	}
	t.Fatalf("no free port found on 127.0.0.1")
	return 0
}

// configParams fill configTemplate.
type configParams struct {
	NATSPort    int    // embedded server's port (0: no embedded listen section)
	NATSURL     string // external NATS instead of embedded
	MetricsPort int
	SyslogPort  int // 0: no receivers section
	AckWait     string
	SinkPath    string
}

var configTemplate = template.Must(template.New("cfg").Parse(`# written by herald's e2e tests
log: {level: info, format: text}
bus:
{{- if .NATSURL}}
  urls: [{{.NATSURL}}]
{{- else}}
  embedded:
    listen: 127.0.0.1:{{.NATSPort}}
    data_dir: nats
{{- end}}
  ack_wait: {{.AckWait}}
metrics:
  listen: 127.0.0.1:{{.MetricsPort}}
shutdown_timeout: 60s
{{- if .SyslogPort}}
receivers:
  syslog:
    type: syslog
    tcp: 127.0.0.1:{{.SyslogPort}}
    udp: 127.0.0.1:{{.SyslogPort}}
{{- end}}
targets:
  log:
    bit: 4
    sinks: [events]
sinks:
  events:
    type: file
    path: {{.SinkPath}}
    format: json
`))

// writeConfig writes a config file into dir and returns its path.
func writeConfig(t testing.TB, dir string, p configParams) string {
	t.Helper()
	if p.AckWait == "" {
		p.AckWait = "10s"
	}
	if p.SinkPath == "" {
		p.SinkPath = "out/events.jsonl"
	}
	return writeTemplate(t, dir, configTemplate, p)
}

// writeTemplate executes tmpl with data into dir/herald.yaml, creating dir
// if needed, and returns the file's path.
func writeTemplate(t testing.TB, dir string, tmpl *template.Template, data any) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatalf("config folder: %v", err)
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, data); err != nil {
		t.Fatalf("config template %q: %v", tmpl.Name(), err)
	}
	path := filepath.Join(dir, "herald.yaml")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatalf("write config: %v", err)
	}
	return path
}

// proc is one herald process a test started.
type proc struct {
	t           testing.TB
	name        string
	cmd         *exec.Cmd
	logPath     string
	metricsPort int

	done     chan struct{}
	exitCode int // valid after done is closed; -1 when killed by a signal
	waitErr  error
}

// startHerald runs `herald run --config cfg` plus extra arguments. Its
// stderr and stdout go to a file in t.TempDir(), printed when the test
// fails (or always, when HERALD_E2E_LOGS is set); the process is killed, if still running, when the test ends.
func startHerald(t testing.TB, name, cfg string, metricsPort int, extra ...string) *proc {
	t.Helper()
	bin := heraldBin(t)
	logPath := filepath.Join(t.TempDir(), name+".log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("log file: %v", err)
	}
	args := append([]string{"run", "--config", cfg}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Dir = filepath.Dir(cfg)
	if err := cmd.Start(); err != nil {
		_ = lf.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{t: t, name: name, cmd: cmd, logPath: logPath, metricsPort: metricsPort, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		_ = lf.Close()
		p.exitCode = cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() || os.Getenv("HERALD_E2E_LOGS") != "" {
			p.dumpLog()
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// dumpLog prints the process's output (its last 64 KiB) into the test log.
func (p *proc) dumpLog() {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		p.t.Logf("%s: log %s: %v", p.name, p.logPath, err)
		return
	}
	const max = 64 << 10
	if len(data) > max {
		data = append([]byte("...(cut)...\n"), data[len(data)-max:]...)
	}
	p.t.Logf("---- %s (pid %d) output, %s ----\n%s---- end of %s output ----", p.name, p.cmd.Process.Pid, p.logPath, data, p.name)
}

// waitReady waits until /readyz answers 200, failing at once if the
// process exits first.
func (p *proc) waitReady(timeout time.Duration) {
	p.t.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", p.metricsPort)
	client := &http.Client{Timeout: time.Second}
	eventually(p.t, timeout, 20*time.Millisecond, func() error {
		if p.exited() {
			p.t.Fatalf("%s exited with code %d before it was ready", p.name, p.exitCode)
		}
		resp, err := client.Get(url)
		if err != nil {
			return fmt.Errorf("%s not ready: %v", p.name, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s not ready: /readyz answered %s", p.name, resp.Status)
		}
		return nil
	})
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !p.exited() {
		p.t.Fatalf("kill %s: %v", p.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.t.Fatalf("%s did not die within 10s of SIGKILL", p.name)
	}
}

// stop sends SIGTERM and waits up to timeout for the exit; it returns the
// exit code and fails the test if the process does not exit in time.
func (p *proc) stop(timeout time.Duration) int {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !p.exited() {
		p.t.Fatalf("SIGTERM %s: %v", p.name, err)
	}
	select {
	case <-p.done:
		return p.exitCode
	case <-time.After(timeout):
		p.t.Fatalf("%s did not exit within %s of SIGTERM", p.name, timeout)
		return -1
	}
}

// metric returns the value of the sample whose name and labels are exactly
// series (e.g. `herald_stage_published_events_total{stage="resolver"}`),
// or 0 when the process does not expose it yet.
func (p *proc) metric(series string) (float64, error) {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", p.metricsPort))
	if err != nil {
		return 0, fmt.Errorf("%s /metrics: %w", p.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s /metrics: %s", p.name, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				return 0, fmt.Errorf("%s /metrics: %q: %w", p.name, line, err)
			}
			return v, nil
		}
	}
	return 0, sc.Err()
}

// jsonKey is the syslog key of a line of a JSON file sink.
func jsonKey(line []byte) (string, error) {
	var ev sinkLine
	if err := json.Unmarshal(line, &ev); err != nil {
		return "", err
	}
	if k := syslogKey.FindString(ev.Message); k != "" {
		return k, nil
	}
	return "", fmt.Errorf("no key in message %q", ev.Message)
}

// sinkFile reads a file sink's output as it grows, counting each event by
// a key that keyOf takes from the decoded line.
type sinkFile struct {
	path   string
	keyOf  func(line []byte) (string, error)
	offset int64
	counts map[string]int
	lines  int
	bad    []string // lines keyOf refused (first few)
	nbad   int
}

func newSinkFile(path string, keyOf func([]byte) (string, error)) *sinkFile {
	return &sinkFile{path: path, keyOf: keyOf, counts: map[string]int{}}
}

// poll reads the complete lines added since the last poll. A missing file
// counts as empty.
func (s *sinkFile) poll() error {
	f, err := os.Open(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(s.offset, io.SeekStart); err != nil {
		return err
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	end := bytes.LastIndexByte(data, '\n')
	if end < 0 {
		return nil
	}
	data = data[:end+1]
	s.offset += int64(len(data))
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		line := data[:i]
		data = data[i+1:]
		s.lines++
		k, err := s.keyOf(line)
		if err != nil {
			s.nbad++
			if len(s.bad) < 5 {
				s.bad = append(s.bad, fmt.Sprintf("%v: %.300s", err, line))
			}
			continue
		}
		s.counts[k]++
	}
	return nil
}

// distinct is the number of different keys seen.
func (s *sinkFile) distinct() int { return len(s.counts) }

// tally compares what the sink holds with the keys expected: the keys
// missing, the keys seen more than once (extra copies summed), and the keys
// not expected at all.
type tally struct {
	missing    []string
	dupKeys    []string
	duplicates int // extra copies beyond the first
	unexpected []string
}

func (s *sinkFile) tally(expected map[string]bool) tally {
	var r tally
	for k := range expected {
		if s.counts[k] == 0 {
			r.missing = append(r.missing, k)
		}
	}
	for k, n := range s.counts {
		if !expected[k] {
			r.unexpected = append(r.unexpected, k)
		}
		if n > 1 {
			r.dupKeys = append(r.dupKeys, k)
			r.duplicates += n - 1
		}
	}
	sort.Strings(r.missing)
	sort.Strings(r.dupKeys)
	sort.Strings(r.unexpected)
	return r
}

// firstFew formats up to n items of a list for a message.
func firstFew(list []string, n int) string {
	if len(list) <= n {
		return strings.Join(list, ", ")
	}
	return strings.Join(list[:n], ", ") + fmt.Sprintf(", ... (%d more)", len(list)-n)
}

// runCommand runs herald with args, bounded by timeout, and returns its exit
// code, stdout and stderr.
func runCommand(t testing.TB, dir string, timeout time.Duration, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, heraldBin(t), args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("herald %s did not finish within %s; stderr:\n%s", strings.Join(args, " "), timeout, stderr.String())
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("herald %s: %v", strings.Join(args, " "), err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}
