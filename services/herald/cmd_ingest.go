package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/herald-router/herald/actors/receiver"
	"github.com/herald-router/herald/actors/receiver/tail/mbox"
	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/internal/metrics"
	"github.com/herald-router/herald/internal/version"
	"github.com/herald-router/herald/schemas"
)

// ingestCmd is `herald ingest`, gnucomo's gcm_input: records from stdin or
// files, published durably to herald's raw stream; the exit status is 0
// only when JetStream acknowledged every record.
func ingestCmd() *cobra.Command {
	var (
		cfgPath, date, host, service, source, mboxPath string
		verbose, showVersion, message                  bool
		timeout                                        time.Duration
		targetMask                                     uint64
		maxSize                                        int
	)
	c := &cobra.Command{
		Use:   "ingest [FILE...]",
		Short: "Publish records from stdin or files to herald and wait until they are stored (gcm_input)",
		Long: `ingest reads records from the files named (stdin when none, or "-") and
publishes them to herald's raw stream (herald.raw.<source>), where the classifier
takes them like any receiver's. It connects to the NATS server of the config's
bus (bus.urls, or the embedded server's listen address: herald must be running)
and exits 0 only once JetStream acknowledged every record; 1 otherwise.

By default each line is a record. --message makes the whole input one message,
such as a mail piped from an MTA; --mbox FILE splits a mail folder on its From_
lines (mboxrd). A mail's sending host (from its oldest Received header), arrival
time (its From_ line, else its newest Received header) and Date become the
event's host, reception time and time; the classifier's mail class makes fields
of its headers (subject, from, to, message_id ...).

-h, -s and -d give the host, service and time to assume: the classifier keeps
them when a record carries none of its own (a plain line of text), and -d also
stands for the arrival time, so a syslog stamp without year gets the year
closest to it. -h is the host here: help is --help only.`,
		Example: `  tail -n 1000 /var/log/app.log | herald ingest -c /etc/herald.yaml -h web1 -s app
  herald ingest -d "2024-03-12 10:00:00" -h db1 old/syslog.1
  herald ingest --message -s mail < message.eml
  herald ingest --mbox /var/mail/root`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if showVersion {
				fmt.Fprintln(cmd.OutOrStdout(), "herald", version.Version)
				return nil
			}
			var assumed time.Time
			if date != "" {
				t, err := parseAssumedDate(date)
				if err != nil {
					return &exitError{2, err}
				}
				assumed = t
			}
			if !tokenOK(source) {
				return &exitError{2, fmt.Errorf("--source %q: use letters, digits, _ and -", source)}
			}
			if mboxPath != "" && (message || len(args) > 0) {
				return &exitError{2, errors.New("--mbox reads one mail folder: give no --message and no files")}
			}
			cfg, err := loadConfig(cmd, cfgPath, registry())
			if err != nil {
				return err
			}
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelInfo
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			busCfg := cfg.Bus
			if len(busCfg.URLs) == 0 {
				if busCfg.Embedded.Listen == "" {
					return &exitError{1, errors.New("the config's embedded NATS server does not listen (bus.embedded.listen is empty) and bus.urls is empty: nothing to connect to")}
				}
				busCfg.URLs = []string{"nats://" + busCfg.Embedded.Listen}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			b, err := bus.Open(ctx, busCfg, log)
			if err != nil {
				return &exitError{1, fmt.Errorf("%w (is herald running?)", err)}
			}
			defer b.Close()
			if _, err := b.JS.Stream(ctx, bus.StreamRaw); err != nil {
				return &exitError{1, fmt.Errorf("herald's raw stream %s: %w (has herald run with this config?)", bus.StreamRaw, err)}
			}
			in := &ingester{
				source: source, host: host, service: service, assumed: assumed, mask: targetMask,
				bt: receiver.NewBatcher(b, bus.RawSubject(source), cfg.Batch.MaxEvents, int(cfg.Batch.MaxBytes),
					cfg.Batch.Linger.D(), metrics.New().Stage("ingest"), log),
			}
			readErr := in.readAll(cmd, args, mboxPath, message, maxSize)
			closeErr := in.bt.Close(ctx)
			in.mu.Lock()
			acked, failed, added, tooLong := in.acked, in.failed, in.added, in.tooLong
			in.mu.Unlock()
			log.Info("ingest done", "subject", bus.RawSubject(source), "records", added, "stored", acked, "failed", failed, "too_long", tooLong)
			switch {
			case readErr != nil:
				return &exitError{1, fmt.Errorf("%w (%d of %d records read so far stored)", readErr, acked, added)}
			case closeErr != nil || acked != added:
				return &exitError{1, fmt.Errorf("only %d of %d records stored within %s (%d failed): %v", acked, added, timeout, failed, closeErr)}
			case tooLong > 0:
				return &exitError{1, fmt.Errorf("%d line(s) over %d bytes were not sent; the other %d records are stored", tooLong, maxSize, acked)}
			}
			if verbose {
				fmt.Fprintf(cmd.ErrOrStderr(), "herald ingest: %d records stored\n", acked)
			}
			return nil
		},
	}
	f := c.Flags()
	// -h is the host, as in gcm_input: help keeps only its long name.
	f.Bool("help", false, "help for ingest")
	f.StringVarP(&cfgPath, "config", "c", "deploy/herald.yaml", "config file (for the NATS address and batch sizes)")
	f.StringVarP(&date, "date", "d", "", `arrival date/time to assume: "2006-01-02 15:04:05", RFC 3339, a date, or @unix-seconds (default now)`)
	f.StringVarP(&host, "host", "h", "", "hostname to assume for records that carry none")
	f.StringVarP(&service, "service", "s", "", "service to assume for records that carry none")
	f.BoolVarP(&verbose, "verbose", "v", false, "report progress and the count stored on stderr")
	f.BoolVarP(&showVersion, "version", "V", false, "print the version and exit")
	f.BoolVar(&message, "message", false, "the whole input (each file, or stdin) is one message, such as a mail")
	f.StringVar(&mboxPath, "mbox", "", `a mail folder to split on its From_ lines ("-" for stdin)`)
	f.StringVar(&source, "source", "ingest", "the events' source, and the raw subject herald.raw.<source>")
	f.Uint64Var(&targetMask, "target-mask", bus.DefaultTargetMask, "target mask of the records")
	f.DurationVar(&timeout, "timeout", time.Minute, "give up (exit 1) when not everything is stored within this")
	f.IntVar(&maxSize, "max-line", 1<<20, "longest line in bytes; longer ones are not sent and make the exit status 1")
	return c
}

// ingester builds records and counts their acknowledgements.
type ingester struct {
	source, host, service string
	assumed               time.Time
	mask                  uint64
	bt                    *receiver.Batcher

	mu                            sync.Mutex
	added, acked, failed, tooLong int
}

func (in *ingester) readAll(cmd *cobra.Command, files []string, mboxPath string, message bool, maxSize int) error {
	open := func(name string) (io.ReadCloser, error) {
		if name == "-" {
			return io.NopCloser(cmd.InOrStdin()), nil
		}
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("open input: %w", err)
		}
		return f, nil
	}
	if mboxPath != "" {
		r, err := open(mboxPath)
		if err != nil {
			return err
		}
		defer r.Close()
		return mbox.Split(r, func(msg []byte) error { return in.add(in.mail(msg)) })
	}
	if len(files) == 0 {
		files = []string{"-"}
	}
	for _, name := range files {
		r, err := open(name)
		if err != nil {
			return err
		}
		if message {
			data, rerr := io.ReadAll(r)
			_ = r.Close()
			if rerr != nil {
				return fmt.Errorf("read %s: %w", name, rerr)
			}
			if len(bytes.TrimSpace(data)) == 0 {
				continue
			}
			if err := in.add(in.mail(data)); err != nil {
				return err
			}
			continue
		}
		tooLong, rerr := readLines(r, maxSize, func(line []byte) error { return in.add(in.record(line)) })
		_ = r.Close()
		in.mu.Lock()
		in.tooLong += tooLong
		in.mu.Unlock()
		if rerr != nil {
			return fmt.Errorf("read %s: %w", name, rerr)
		}
	}
	return nil
}

// record is one record with the assumed envelope.
func (in *ingester) record(raw []byte) *schemas.Event {
	received := time.Now()
	ev := &schemas.Event{Raw: raw, Source: in.source, TargetMask: in.mask, Host: in.host, Service: in.service}
	if !in.assumed.IsZero() {
		received = in.assumed
		ev.TimeUnixNano = in.assumed.UnixNano()
	}
	ev.ReceivedUnixNano = received.UnixNano()
	return ev
}

// mail is one message, its headers read.
func (in *ingester) mail(msg []byte) *schemas.Event {
	ev := in.record(nil)
	mbox.Parse(msg).Apply(ev)
	return ev
}

func (in *ingester) add(ev *schemas.Event) error {
	in.mu.Lock()
	in.added++
	in.mu.Unlock()
	ok := in.bt.AddConfirmed(ev, func(err error) {
		in.mu.Lock()
		defer in.mu.Unlock()
		if err != nil {
			in.failed++
			return
		}
		in.acked++
	})
	if !ok {
		return errors.New("publisher closed")
	}
	return nil
}

// parseAssumedDate reads -d: RFC 3339, "2006-01-02 15:04:05",
// "2006-01-02T15:04:05", "2006-01-02", or @unix-seconds; without a zone
// the local one.
func parseAssumedDate(s string) (time.Time, error) {
	if rest, ok := strings.CutPrefix(s, "@"); ok {
		n, err := strconv.ParseInt(rest, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("-d %q: want @unix-seconds", s)
		}
		return time.Unix(n, 0), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("-d %q: want \"2006-01-02 15:04:05\", RFC 3339, a date or @unix-seconds", s)
}

// readLines calls emit with a copy of each line of r (without its newline;
// a final unterminated line counts too), skipping empty ones. Lines longer
// than max are skipped and counted.
func readLines(r io.Reader, max int, emit func([]byte) error) (tooLong int, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	for {
		chunk, rerr := br.ReadSlice('\n')
		if len(line) <= max {
			line = append(line, chunk...)
		}
		if errors.Is(rerr, bufio.ErrBufferFull) {
			continue
		}
		full := bytes.TrimSuffix(line, []byte("\n"))
		switch {
		case len(full) > max:
			tooLong++
		case len(bytes.TrimRight(full, "\r")) > 0:
			if err := emit(bytes.Clone(full)); err != nil {
				return tooLong, err
			}
		}
		line = line[:0]
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				return tooLong, nil
			}
			return tooLong, rerr
		}
	}
}

// tokenOK reports whether s can be a subject token.
func tokenOK(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}
