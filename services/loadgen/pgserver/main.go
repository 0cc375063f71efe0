// Command pgserver is the PostgreSQL half of `make bench`
// (services/loadgen/bench.sh): it runs a throw-away PostgreSQL server and
// measures how fast herald's postgres sink fills a table.
//
//	pgserver serve -dir DIR [-port 15432] [-set name=value ...]
//
// creates a fresh cluster (initdb) in DIR/data, starts it on 127.0.0.1:PORT
// with password authentication (user herald, password in DIR/password),
// writes the connection URL without the password to DIR/dsn once the
// server accepts connections, and runs until SIGTERM or SIGINT, which stop
// the server with a fast shutdown. The server comes from Debian's
// postgresql package (deploy/ci/deps.sh installs it); PostgreSQL refuses to
// run as root, so as root it runs as the postgres system user and DIR is
// handed to that user. -set passes a server setting (-c name=value), for
// instance synchronous_commit=off; the defaults are PostgreSQL's, with
// more room for the write-ahead log so that checkpoints do not dominate a
// short run.
//
//	pgserver count -dsn URL -password-file FILE -n N [-metrics URL -sink NAME] [-pid PID]
//
// waits until the table holds N rows and prints the rate, from its own
// start (launch it just before the load generator) to the moment the N-th
// row was committed. With -metrics it watches herald's
// herald_sink_committed_events_total{sink=NAME}, which is cheap, and counts
// the table's rows (a full scan) only once herald reports N; without, it
// counts the rows every 250 ms. It then checks that the table holds
// exactly N rows, N distinct ids. With -pid it reports herald's peak RSS
// and CPU. -json adds the figures as one JSON object on the last line.
// Exit status 1 when the table does not get exactly N rows in -timeout.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: pgserver serve|count [flags] (-h for the flags)")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "count":
		err = count(os.Args[2:], os.Stdout)
	default:
		err = fmt.Errorf("unknown command %q: serve or count", os.Args[1])
	}
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgserver: %v\n", err)
		os.Exit(1)
	}
}

// settings collects repeated -set flags.
type settings []string

func (s *settings) String() string { return strings.Join(*s, " ") }
func (s *settings) Set(v string) error {
	if !strings.Contains(v, "=") {
		return fmt.Errorf("want name=value, not %q", v)
	}
	*s = append(*s, v)
	return nil
}

func serve(args []string) error {
	fs := flag.NewFlagSet("pgserver serve", flag.ContinueOnError)
	dir := fs.String("dir", "", "folder for the cluster, the password and the log (created; must be new or empty)")
	port := fs.Int("port", 15432, "port on 127.0.0.1")
	var set settings
	fs.Var(&set, "set", "server setting `name=value` (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("-dir is required")
	}
	bin, err := binDir()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	if entries, _ := os.ReadDir(*dir); len(entries) > 0 {
		return fmt.Errorf("%s is not empty", *dir)
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		if cred, err = postgresUser(); err != nil {
			return err
		}
		if err := giveDir(*dir, cred); err != nil {
			return fmt.Errorf("hand %s to the postgres user: %w", *dir, err)
		}
	}
	password, err := randomHex()
	if err != nil {
		return err
	}
	pwFile := filepath.Join(*dir, "password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		return err
	}
	if cred != nil {
		if err := os.Chown(pwFile, int(cred.Uid), int(cred.Gid)); err != nil {
			return err
		}
	}
	data := filepath.Join(*dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "herald", "--pwfile", pwFile,
		"--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync")
	initdb.Dir = *dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	logf, err := os.OpenFile(filepath.Join(*dir, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	// No Unix socket: its default folder belongs to the system's own
	// server.
	pgArgs := []string{"-D", data, "-p", strconv.Itoa(*port), "-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=", "-c", "max_wal_size=2GB", "-c", "shared_buffers=128MB"}
	for _, s := range set {
		pgArgs = append(pgArgs, "-c", s)
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), pgArgs...)
	cmd.Dir = *dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: SIGQUIT is PostgreSQL's immediate shutdown, so a pgserver
	// that dies leaves no server behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGQUIT}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	// Pdeathsig is per thread: keep the one that starts postgres.
	runtime.LockOSThread()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stop := func() error {
		_ = cmd.Process.Signal(syscall.SIGINT) // fast shutdown
		select {
		case <-done:
			return nil
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			return errors.New("postgres did not stop within 30s of SIGINT; killed")
		}
	}

	dsn := fmt.Sprintf("postgres://herald@127.0.0.1:%d/postgres?sslmode=disable", *port)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := connect(ctx, dsn, password)
		if err == nil {
			_ = c.Close(ctx)
			cancel()
			break
		}
		cancel()
		select {
		case werr := <-done:
			return fmt.Errorf("postgres exited before accepting connections (%v); see %s", werr, logf.Name())
		case <-sig:
			return stop()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = stop()
			return fmt.Errorf("postgres does not accept connections after 60s: %w", err)
		}
	}
	// Written last: its presence says the server is ready.
	tmp := filepath.Join(*dir, "dsn.tmp")
	if err := os.WriteFile(tmp, []byte(dsn+"\n"), 0o644); err != nil {
		_ = stop()
		return err
	}
	if err := os.Rename(tmp, filepath.Join(*dir, "dsn")); err != nil {
		_ = stop()
		return err
	}
	select {
	case err := <-done:
		return fmt.Errorf("postgres exited: %v; see %s", err, logf.Name())
	case <-sig:
		return stop()
	}
}

// countResult is what count reports.
type countResult struct {
	Rows          int64   `json:"rows"`
	DistinctIDs   int64   `json:"distinct_ids"`
	Seconds       float64 `json:"seconds"`
	EventsPerS    float64 `json:"events_per_s"`
	HeraldRSSMiB  float64 `json:"herald_peak_rss_mib,omitempty"`
	HeraldCPUPerc float64 `json:"herald_cpu_percent,omitempty"`
	// Transactions is how many batches the target acked (one SQL
	// transaction each, when nothing failed), from -metrics.
	Transactions float64 `json:"transactions,omitempty"`
}

func count(args []string, stdout io.Writer) error {
	start := time.Now()
	fs := flag.NewFlagSet("pgserver count", flag.ContinueOnError)
	dsn := fs.String("dsn", "", "connection URL")
	pwFile := fs.String("password-file", "", "file whose first line is the password")
	table := fs.String("table", "herald_events", "the sink's table")
	n := fs.Int64("n", 0, "rows to wait for")
	timeout := fs.Duration("timeout", 300*time.Second, "give up after this long")
	metricsURL := fs.String("metrics", "", "herald's /metrics URL (optional)")
	sinkName := fs.String("sink", "events", "the postgres sink's name, for -metrics")
	pid := fs.Int("pid", 0, "herald's PID: report its peak RSS and CPU")
	asJSON := fs.Bool("json", false, "also print the figures as one JSON object (last line)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dsn == "" || *n < 1 {
		return errors.New("-dsn and -n are required")
	}
	password := ""
	if *pwFile != "" {
		b, err := os.ReadFile(*pwFile)
		if err != nil {
			return err
		}
		password = strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	}
	cpu0, _ := cpuTicks(*pid)
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	conn, err := connect(ctx, *dsn, password)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	ident := pgx.Identifier(strings.Split(*table, ".")).Sanitize()

	rows := func() (int64, error) {
		var exists bool
		if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, ident).Scan(&exists); err != nil || !exists {
			return 0, err
		}
		var c int64
		err := conn.QueryRow(ctx, "SELECT count(*) FROM "+ident).Scan(&c)
		return c, err
	}
	client := &http.Client{Timeout: 2 * time.Second}
	series := fmt.Sprintf(`herald_sink_committed_events_total{sink=%q}`, *sinkName)
	var got int64
	var end time.Time
	lastCount := time.Time{}
	for {
		now := time.Now()
		due := now.Sub(lastCount) >= 250*time.Millisecond
		if *metricsURL != "" {
			v, err := metric(client, *metricsURL, series)
			due = err == nil && int64(v) >= *n
		}
		if due {
			lastCount = now
			if got, err = rows(); err != nil {
				return fmt.Errorf("count rows: %w", err)
			}
			if got >= *n {
				end = now
				break
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d rows after %s", got, *n, *timeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
	cpu1, cerr := cpuTicks(*pid)
	r := countResult{Seconds: end.Sub(start).Seconds()}
	if err := conn.QueryRow(ctx, "SELECT count(*), count(DISTINCT id) FROM "+ident).Scan(&r.Rows, &r.DistinctIDs); err != nil {
		return err
	}
	r.EventsPerS = float64(*n) / r.Seconds
	if *pid > 0 && cerr == nil {
		// Linux's USER_HZ is 100 on every architecture Go supports.
		r.HeraldCPUPerc = float64(cpu1-cpu0) / 100 / r.Seconds * 100
		r.HeraldRSSMiB, _ = peakRSS(*pid)
	}
	if *metricsURL != "" {
		r.Transactions, _ = metric(client, *metricsURL, `herald_stage_acked_messages_total{stage="target.log"}`)
	}
	fmt.Fprintf(stdout, "  postgres    %d rows, %d distinct ids in table %s\n", r.Rows, r.DistinctIDs, *table)
	if r.Transactions > 0 {
		fmt.Fprintf(stdout, "  batches     %.0f acked by target log: %.0f events per transaction\n", r.Transactions, float64(r.Rows)/r.Transactions)
	}
	fmt.Fprintf(stdout, "  end to end  %.2fs first send -> row %d committed: %.0f events/s\n", r.Seconds, *n, r.EventsPerS)
	if r.HeraldCPUPerc > 0 {
		fmt.Fprintf(stdout, "  herald      pid %d: peak RSS %.1f MiB, CPU %.0f%% (of %d%%)\n", *pid, r.HeraldRSSMiB, r.HeraldCPUPerc, 100*runtime.NumCPU())
	}
	if *asJSON {
		b, _ := json.Marshal(r)
		fmt.Fprintf(stdout, "%s\n", b)
	}
	if r.Rows != *n || r.DistinctIDs != *n {
		return fmt.Errorf("table holds %d rows, %d distinct ids; want %d of each", r.Rows, r.DistinctIDs, *n)
	}
	return nil
}

func connect(ctx context.Context, dsn, password string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	if password != "" {
		cfg.Password = password
	}
	cfg.ConnectTimeout = 2 * time.Second
	return pgx.ConnectConfig(ctx, cfg)
}

// metric is the value of one series on a Prometheus text page, 0 when it
// is not there yet.
func metric(client *http.Client, url, series string) (float64, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	return 0, sc.Err()
}

// cpuTicks is utime+stime of pid from /proc/PID/stat.
func cpuTicks(pid int) (uint64, error) {
	if pid <= 0 {
		return 0, errors.New("no pid")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces: fields start after its ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("malformed stat")
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed stat")
	}
	return u + s, nil
}

// peakRSS is VmHWM of pid in MiB.
func peakRSS(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024, err
		}
	}
	return 0, errors.New("no VmHWM")
}

// binDir finds the newest installed server's programs.
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(d string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(d)), 64)
		return v
	}
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

func postgresUser() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and PostgreSQL refuses to: no postgres user to run it as (%w)", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("postgres user has uid %q gid %q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// giveDir hands dir to the postgres user and lets it reach the folder
// through its parents inside the temporary folder (bench.sh's mktemp
// folder is root's and closed to others). Folders outside it are left
// alone.
func giveDir(dir string, cred *syscall.Credential) error {
	if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
		return err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	tmp := filepath.Clean(os.TempDir())
	for d := filepath.Dir(abs); strings.HasPrefix(d, tmp+string(filepath.Separator)); d = filepath.Dir(d) {
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

func randomHex() (string, error) {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
