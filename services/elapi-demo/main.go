// Command elapi-demo logs events to herald with tracking and prints what
// became of them, per target: the first program to run against herald.
//
//	make run &                       # herald with its default config
//	go run ./services/elapi-demo     # 10,000 events to the log target
//	go run ./services/elapi-demo -n 50000 -mask 6 -url nats://127.0.0.1:4222
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/herald-router/herald/elapi"
)

func main() {
	url := flag.String("url", "nats://127.0.0.1:4222", "herald's NATS server(s), comma-separated (bus.embedded.listen)")
	n := flag.Int("n", 10000, "events to log")
	mask := flag.String("mask", "log", "targets: debug, audit, log or a number, comma-separated")
	app := flag.String("app", "elapi-demo", "application name")
	timeout := flag.Duration("timeout", 2*time.Minute, "how long to wait for every event to be done")
	flag.Parse()
	if err := run(*url, *n, *mask, *app, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "elapi-demo:", err)
		os.Exit(1)
	}
}

// summary counts outcomes as the callbacks report them.
type summary struct {
	mu        sync.Mutex
	done      int
	unrouted  int
	errs      map[string]int
	committed map[string]map[string]int // target → sink → copies
	failed    map[string]map[string]int // target → reason → copies
}

func (s *summary) add(n elapi.Notice) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done++
	if n.Err != nil {
		s.errs[n.Err.Error()]++
		return
	}
	if len(n.Result.Targets) == 0 {
		s.unrouted++
	}
	for _, t := range n.Result.Targets {
		m, key := s.committed, t.Sink
		if t.Outcome == elapi.Failed {
			m, key = s.failed, t.Reason
		}
		if m[t.Target] == nil {
			m[t.Target] = map[string]int{}
		}
		m[t.Target][key]++
	}
}

func run(url string, n int, maskText, app string, timeout time.Duration) error {
	mask, err := parseMask(maskText)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d, err := elapi.Dial(ctx, strings.Split(url, ","), elapi.WithApplication(app))
	if err != nil {
		return err
	}
	tpl, err := elapi.NewTemplate(elapi.String("demo", "elapi"), elapi.String(elapi.ResMessage, "order %(order) of %(user)"))
	if err != nil {
		return err
	}
	s := &summary{errs: map[string]int{}, committed: map[string]map[string]int{}, failed: map[string]map[string]int{}}
	start := time.Now()
	for i := range n {
		ev, err := elapi.FromTemplate(tpl, elapi.Message("order placed"), elapi.Int("order", int64(i)),
			elapi.String("user", "user"+strconv.Itoa(i%100)))
		if err != nil {
			return err
		}
		if _, err := d.LogAsync(ev, mask, s.add, elapi.OnDone); err != nil {
			return err
		}
	}
	sent := time.Since(start)
	closeErr := d.Close(ctx)
	elapsed := time.Since(start)

	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Printf("%d events logged in %s, all done in %s (%.0f events/s)\n", n, sent.Round(time.Millisecond), elapsed.Round(time.Millisecond), float64(s.done)/elapsed.Seconds())
	targets := map[string]bool{}
	for t := range s.committed {
		targets[t] = true
	}
	for t := range s.failed {
		targets[t] = true
	}
	for _, t := range sorted(targets) {
		fmt.Printf("target %s:\n", t)
		for _, sink := range sortedKeys(s.committed[t]) {
			fmt.Printf("  committed by %-20s %d\n", sink, s.committed[t][sink])
		}
		for _, reason := range sortedKeys(s.failed[t]) {
			fmt.Printf("  failed, %-25s %d\n", reason, s.failed[t][reason])
		}
	}
	if s.unrouted > 0 {
		fmt.Printf("routed to no target: %d\n", s.unrouted)
	}
	for e, c := range s.errs {
		fmt.Printf("not logged (%s): %d\n", e, c)
	}
	var oe *elapi.OpenError
	if errors.As(closeErr, &oe) {
		return fmt.Errorf("%d event(s) not done within %s", len(oe.Events), timeout)
	}
	return closeErr
}

func parseMask(s string) (elapi.Mask, error) {
	names := map[string]elapi.Mask{"debug": elapi.MaskDebug, "audit": elapi.MaskAudit, "log": elapi.MaskLog}
	var m elapi.Mask
	for _, p := range strings.Split(s, ",") {
		if v, ok := names[p]; ok {
			m |= v
			continue
		}
		v, err := strconv.ParseUint(p, 0, 64)
		if err != nil {
			return 0, fmt.Errorf("-mask %q: want debug, audit, log or a number", p)
		}
		m |= elapi.Mask(v)
	}
	return m, nil
}

func sorted(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
