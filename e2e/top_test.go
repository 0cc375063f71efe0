package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// steadyLoad sends syslog lines to addr over TCP at about perSecond until
// the test ends, so that herald top has rates to show. It returns how many
// lines were written when the test ends (read it after stop).
func steadyLoad(t *testing.T, addr string, perSecond int) (stop func() int) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sent := make(chan int, 1)
	go func() {
		defer conn.Close()
		w := bufio.NewWriter(conn)
		tick := time.NewTicker(10 * time.Millisecond) // pacing, not synchronisation
		defer tick.Stop()
		n := 0
		for {
			select {
			case <-ctx.Done():
				_ = w.Flush()
				sent <- n
				return
			case <-tick.C:
			}
			for range max(perSecond/100, 1) {
				line, _ := syslogLine("tcp", 0, n, "Mar  1 12:00:00")
				_, _ = w.WriteString(line + "\n")
				n++
			}
			if err := w.Flush(); err != nil {
				sent <- n
				return
			}
		}
	}()
	var total = -1
	stop = func() int {
		if total < 0 {
			cancel()
			total = <-sent
		}
		return total
	}
	t.Cleanup(func() { stop() })
	return stop
}

// runningHerald starts herald on a fresh config under steady load and
// waits until events reach the sink stage.
func runningHerald(t *testing.T) (cfg string, p *proc) {
	t.Helper()
	dir := t.TempDir()
	natsPort, metricsPort, syslogPort := freePort(t), freePort(t), freePort(t)
	cfg = writeConfig(t, dir, configParams{NATSPort: natsPort, MetricsPort: metricsPort, SyslogPort: syslogPort})
	p = startHerald(t, "herald", cfg, metricsPort)
	p.waitReady(30 * time.Second)
	steadyLoad(t, fmt.Sprintf("127.0.0.1:%d", syslogPort), 2000)
	eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
		v, err := p.metric(`herald_sink_committed_events_total{sink="events"}`)
		if err != nil || v == 0 {
			return fmt.Errorf("no event committed yet (%v)", err)
		}
		return nil
	})
	return cfg, p
}

// rowOf returns the columns of the table row whose first column is name.
func rowOf(screen, name string) []string {
	for _, line := range strings.Split(screen, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == name {
			return f
		}
	}
	return nil
}

// nonZeroRate reports whether a rate column holds a figure above zero.
func nonZeroRate(s string) bool { return s != "-" && s != "0.0" && s != "0" }

func TestTopOnceShowsEveryStageOfAHeraldUnderLoad(t *testing.T) {
	start := time.Now()
	cfg, _ := runningHerald(t)
	code, out, errOut := runCommand(t, filepath.Dir(cfg), 30*time.Second, "top", "--once", "--config", cfg, "--interval", "1s")
	if code != 0 {
		t.Fatalf("herald top --once exited %d:\n%s%s", code, out, errOut)
	}
	t.Logf("herald top --once:\n%s", out)
	for _, st := range []string{"receiver.syslog", "classifier", "resolver", "router", "target.log"} {
		row := rowOf(out, st)
		if len(row) != 11 {
			t.Errorf("no full row for stage %s", st)
			continue
		}
		if !nonZeroRate(row[1]) || !nonZeroRate(row[2]) {
			t.Errorf("stage %s: rates in %s and out %s, want both above zero under load", st, row[1], row[2])
		}
		if st != "receiver.syslog" && row[5] == "-" {
			t.Errorf("stage %s: no JetStream consumer info (PENDING -)", st)
		}
	}
	if row := rowOf(out, "events"); len(row) != 5 || row[1] != "up" || !nonZeroRate(row[2]) {
		t.Errorf("sink events: %v, want up and committing", row)
	}
	if !strings.Contains(out, "dead letters in HERALD_DLQ: 0") {
		t.Error("the dead-letter stream's size is missing")
	}
	t.Logf("took %s", time.Since(start).Round(time.Millisecond))
}

func TestTopOnceFailsWhenHeraldCannotBeRead(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, configParams{NATSPort: freePort(t), MetricsPort: freePort(t)})
	code, out, errOut := runCommand(t, dir, 30*time.Second, "top", "--once", "--config", cfg, "--interval", "10ms")
	if code == 0 {
		t.Fatalf("herald top --once against nothing exited 0:\n%s", out)
	}
	if !strings.Contains(out+errOut, "connect to nats") && !strings.Contains(out+errOut, "metrics") {
		t.Errorf("the reason is not said:\n%s%s", out, errOut)
	}
}

// The live view, driven as an operator drives it: in a real terminal
// (tmux), under load, the screen shows non-zero rates, and q quits.
func TestTopInATerminalShowsLiveRatesAndQuitsOnQ(t *testing.T) {
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		t.Fatalf("tmux is needed to drive herald top in a terminal (deploy/ci/deps.sh installs it): %v", err)
	}
	cfg, _ := runningHerald(t)
	sock := fmt.Sprintf("herald-top-%d", freePort(t)) // a server of our own, never the user's
	run := func(args ...string) (string, error) {
		out, err := exec.Command(tmux, append([]string{"-L", sock}, args...)...).CombinedOutput()
		return string(out), err
	}
	cmdline := fmt.Sprintf("%s top --config %s --interval 500ms", heraldBin(t), cfg)
	if out, err := run("new-session", "-d", "-s", "top", "-x", "200", "-y", "40", cmdline); err != nil {
		t.Fatalf("tmux new-session: %v: %s", err, out)
	}
	t.Cleanup(func() { _, _ = run("kill-server") })
	var screen string
	eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		s, err := run("capture-pane", "-p", "-t", "top")
		if err != nil {
			return fmt.Errorf("capture-pane: %v: %s", err, s)
		}
		screen = s
		row := rowOf(s, "receiver.syslog")
		if len(row) < 3 || !nonZeroRate(row[1]) {
			return fmt.Errorf("no non-zero rate on screen yet:\n%s", s)
		}
		if row := rowOf(s, "target.log"); len(row) < 3 || !nonZeroRate(row[2]) {
			return fmt.Errorf("no non-zero rate for target.log yet:\n%s", s)
		}
		return nil
	})
	t.Logf("screen:\n%s", screen)
	if out, err := run("send-keys", "-t", "top", "q"); err != nil {
		t.Fatalf("send-keys: %v: %s", err, out)
	}
	eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		if _, err := run("has-session", "-t", "top"); err == nil {
			return fmt.Errorf("herald top still runs after q")
		}
		return nil
	})
}
