package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/elapi"
)

// logCmd is `herald log`: one event from a shell script, through package
// elapi, waiting until every target is done with it.
func logCmd() *cobra.Command {
	var cfgPath, url, mask, message, app string
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "log [key=value | key:=number|true|false]...",
		Short: "Log one event and wait until every target wrote it (or gave up on it)",
		Long: `log sends one event to herald and waits until every target the event is routed to
committed it with a sink of its chain, or dead-lettered it. It prints the event id and
one line per target.

Fields are key=value (text) or key:=value (a number, true or false), in order. The
reserved keys set the envelope: __host__, __app__, __message__ and __time__ (RFC 3339).

--mask takes target names or numbers joined by commas: "audit", "audit,log", "6".
Names are the targets of the config (-c); without one, debug=1, audit=2, log=4.
The server is --url, else the config's bus (bus.urls, or bus.embedded.listen).

Exit code: 0 when every target committed the event, 1 when a target failed (its
reason is printed), 2 for a bad argument or config, 3 when herald could not be
reached or did not finish within --timeout.`,
		Example: `  herald log -c deploy/herald.yaml --mask audit -m "backup done" host=db1 bytes:=1048576
  herald log --url nats://127.0.0.1:4222 --mask log,audit user=bob action=login`,
		RunE: func(cmd *cobra.Command, args []string) error {
			var targets map[string]uint64
			if url == "" || cmd.Flags().Changed("config") {
				cfg, err := loadConfig(cmd, cfgPath, registry())
				if err != nil {
					return &exitError{2, err}
				}
				targets = map[string]uint64{}
				for name, t := range cfg.Targets {
					targets[name] = t.Bit
				}
				if url == "" {
					if url, err = busURL(cfg.Bus); err != nil {
						return &exitError{2, err}
					}
				}
			}
			m, err := parseMask(mask, targets)
			if err != nil {
				return &exitError{2, err}
			}
			fields, err := parseFields(args)
			if err != nil {
				return &exitError{2, err}
			}
			if message != "" {
				fields = append(fields, elapi.Message(message))
			}
			ev, err := elapi.NewEvent(fields...)
			if err != nil {
				return &exitError{2, err}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			d, err := elapi.Dial(ctx, strings.Split(url, ","), elapi.WithApplication(app))
			if err != nil {
				return &exitError{3, err}
			}
			defer d.Close(ctx)
			res, err := d.Log(ctx, elapi.Mask(m), ev, elapi.WaitAllTargets())
			if err != nil {
				return &exitError{3, err}
			}
			out := cmd.OutOrStdout()
			fmt.Fprintln(out, res.ID)
			if len(res.Targets) == 0 {
				fmt.Fprintln(out, "no target matched")
			}
			for _, t := range res.Targets {
				fmt.Fprintln(out, t)
			}
			if err := res.Err(); err != nil {
				return &exitError{1, err}
			}
			return nil
		},
	}
	c.Flags().StringVarP(&cfgPath, "config", "c", "deploy/herald.yaml", "config file: the bus to connect to and the target names")
	c.Flags().StringVar(&url, "url", "", "NATS server(s) of herald, comma-separated (instead of the config's bus)")
	c.Flags().StringVar(&mask, "mask", "log", "targets: names or numbers, comma-separated")
	c.Flags().StringVarP(&message, "message", "m", "", "the event's message")
	c.Flags().StringVar(&app, "app", "herald-log", "application name of the event")
	c.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for every target")
	return c
}

// busURL is where a client reaches the bus of cfg.
func busURL(b config.Bus) (string, error) {
	if len(b.URLs) > 0 {
		return strings.Join(b.URLs, ","), nil
	}
	if b.Embedded.Listen == "" {
		return "", errors.New("the config's embedded NATS server does not listen (bus.embedded.listen is empty): give --url")
	}
	host, port, err := net.SplitHostPort(b.Embedded.Listen)
	if err != nil {
		return "", fmt.Errorf("bus.embedded.listen %q: %w", b.Embedded.Listen, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "nats://" + net.JoinHostPort(host, port), nil
}

// parseMask reads "audit,log" or "6"; names come from targets, or the
// conventional three when there is no config.
func parseMask(s string, targets map[string]uint64) (uint64, error) {
	if targets == nil {
		targets = map[string]uint64{"debug": uint64(elapi.MaskDebug), "audit": uint64(elapi.MaskAudit), "log": uint64(elapi.MaskLog)}
	}
	var m uint64
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if n, err := strconv.ParseUint(p, 0, 64); err == nil {
			m |= n
			continue
		}
		bit, ok := targets[p]
		if !ok {
			names := make([]string, 0, len(targets))
			for n := range targets {
				names = append(names, n)
			}
			sort.Strings(names)
			return 0, fmt.Errorf("--mask: no target %q (targets: %s)", p, strings.Join(names, ", "))
		}
		m |= bit
	}
	if m == 0 {
		return 0, errors.New("--mask selects no target")
	}
	return m, nil
}

// parseFields reads key=value (text) and key:=value (number or boolean).
func parseFields(args []string) ([]elapi.Field, error) {
	var out []elapi.Field
	for _, a := range args {
		if k, v, ok := strings.Cut(a, ":="); ok && !strings.Contains(k, "=") {
			f, err := typedField(k, v)
			if err != nil {
				return nil, err
			}
			out = append(out, f)
			continue
		}
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return nil, fmt.Errorf("argument %q: want key=value or key:=number", a)
		}
		if k == elapi.AttrTime {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return nil, fmt.Errorf("%s=%s: want an RFC 3339 time", k, v)
			}
			out = append(out, elapi.At(t))
			continue
		}
		out = append(out, elapi.String(k, v))
	}
	return out, nil
}

func typedField(k, v string) (elapi.Field, error) {
	if i, err := strconv.ParseInt(v, 10, 64); err == nil {
		return elapi.Int(k, i), nil
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		return elapi.Float(k, f), nil
	}
	if b, err := strconv.ParseBool(v); err == nil {
		return elapi.Bool(k, b), nil
	}
	return elapi.Field{}, fmt.Errorf("%s:=%s: want a number, true or false (key=value for text)", k, v)
}
