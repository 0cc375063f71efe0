package top

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Source names where a sample was read from, for the title line.
type Source struct {
	MetricsURL, NATSURL string
}

// Render writes the table of cur: rates are the change since prev (nil:
// no rates yet, shown as "-"). width cuts each line (0: no limit).
func Render(src Source, prev, cur *Sample, width int) string {
	var b strings.Builder
	at := "no sample yet"
	if cur != nil {
		at = cur.At.Format("15:04:05")
	}
	fmt.Fprintf(&b, "herald top  %s  metrics %s  nats %s\n\n", at, orDash(src.MetricsURL), orDash(src.NATSURL))
	if cur == nil {
		return cut(b.String(), width)
	}
	var dt float64
	if prev != nil {
		dt = cur.At.Sub(prev.At).Seconds()
	}
	rate := func(now, before float64) string {
		if prev == nil || dt <= 0 {
			return "-"
		}
		r := (now - before) / dt
		if r < 0 { // herald restarted: its counters began again
			return "-"
		}
		return num(r)
	}

	names := map[string]bool{}
	for n := range cur.Stages {
		names[n] = true
	}
	for n := range cur.Consumers {
		names[n] = true
	}
	var stages []string
	for n := range names {
		stages = append(stages, n)
	}
	stageOrder(stages)

	rows := [][]string{{"STAGE", "IN/s", "OUT/s", "RECEIVED", "PUBLISHED", "PENDING", "ACK-PENDING", "REDELIVERED", "DEAD-LETTERED", "REJECTED", "RESTARTS"}}
	for _, n := range stages {
		sc := cur.Stages[n]
		if sc == nil {
			sc = &StageCounts{}
		}
		in, out := "-", "-"
		if prev != nil && prev.Stages[n] != nil {
			in, out = rate(sc.Received, prev.Stages[n].Received), rate(sc.Published, prev.Stages[n].Published)
		}
		pending, ackPending := "-", "-"
		if c, ok := cur.Consumers[n]; ok {
			pending, ackPending = count(float64(c.Pending)), count(float64(c.AckPending))
		}
		rows = append(rows, []string{n, in, out, count(sc.Received), count(sc.Published), pending, ackPending,
			count(sc.Redelivered), count(sc.DeadLettered), count(sc.Rejected), count(sc.Restarts)})
	}
	table(&b, rows)

	if len(cur.Sinks) > 0 {
		b.WriteString("\n")
		var sinks []string
		for n := range cur.Sinks {
			sinks = append(sinks, n)
		}
		sort.Strings(sinks)
		rows := [][]string{{"SINK", "STATE", "COMMITTED/s", "COMMITTED", "RESTARTS"}}
		for _, n := range sinks {
			sk := cur.Sinks[n]
			r := "-"
			if prev != nil && prev.Sinks[n] != nil {
				r = rate(sk.Committed, prev.Sinks[n].Committed)
			}
			state := "up"
			if sk.Suspended {
				state = "SUSPENDED"
			}
			rows = append(rows, []string{n, state, r, count(sk.Committed), count(sk.Restarts)})
		}
		table(&b, rows)
	}

	b.WriteString("\n")
	switch {
	case cur.DeadLetters >= 0:
		fmt.Fprintf(&b, "dead letters in HERALD_DLQ: %s\n", count(float64(cur.DeadLetters)))
	default:
		b.WriteString("dead letters in HERALD_DLQ: unknown (no NATS)\n")
	}
	if cur.MetricsErr != "" {
		fmt.Fprintf(&b, "metrics: %s\n", cur.MetricsErr)
	}
	if cur.NATSErr != "" {
		fmt.Fprintf(&b, "nats: %s\n", cur.NATSErr)
	}
	return cut(b.String(), width)
}

// table writes rows as columns two spaces apart: the first column (the
// names) left-aligned, the others (figures) right-aligned.
func table(b *strings.Builder, rows [][]string) {
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	for _, r := range rows {
		var line strings.Builder
		for i, c := range r {
			pad := strings.Repeat(" ", widths[i]-len([]rune(c)))
			switch {
			case i == 0:
				line.WriteString(c + pad)
			default:
				line.WriteString("  " + pad + c)
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
}

// num formats a rate: one decimal below 10, whole numbers above.
func num(r float64) string {
	if r < 10 {
		return strconv.FormatFloat(r, 'f', 1, 64)
	}
	return count(r)
}

// count formats a whole number with thousands separators.
func count(v float64) string {
	s := strconv.FormatInt(int64(v+0.5), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// cut shortens every line to width runes.
func cut(s string, width int) string {
	if width <= 0 {
		return s
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if r := []rune(l); len(r) > width {
			lines[i] = string(r[:width])
		}
	}
	return strings.Join(lines, "\n")
}
