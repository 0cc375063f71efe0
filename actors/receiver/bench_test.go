package receiver_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/herald-router/herald/actors/receiver"
	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/bus/bustest"
	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/internal/metrics"
)

// BenchmarkSyslogTCPIntake measures TCP syslog intake alone: one
// connection of 200-byte RFC 3164 lines into the receiver, batched with
// herald's default batch settings and stored durably in the raw stream of
// an embedded JetStream (file storage) in this process. A record counts once
// JetStream acknowledged its batch. Run it on 2 cores:
//
//	go test -run '^$' -bench SyslogTCPIntake -cpu 2 -benchtime 1000000x ./actors/receiver/
func BenchmarkSyslogTCPIntake(b *testing.B) {
	bb := bustest.Open(b)
	m := metrics.New()
	st := m.Stage("receiver.syslog")
	def := config.Default().Batch
	bt := receiver.NewBatcher(bb, bus.RawSubject("syslog"), def.MaxEvents, int(def.MaxBytes), def.Linger.D(), st, bustest.Logger(b))
	o := receiver.DefaultSyslogOptions()
	o.TCP = "127.0.0.1:0"
	s, err := receiver.NewSyslog(receiver.Env{Name: "syslog", Bus: bb, Batcher: bt, Metrics: st,
		Connections: m.Connections.WithLabelValues("syslog"), Log: bustest.Logger(b)}, o)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		b.Fatal(err)
	}
	s.Serve()
	defer func() {
		s.Shutdown(context.Background())
		_ = bt.Close(context.Background())
	}()
	pad := strings.Repeat("x", 200)
	line := func(i int) string {
		l := fmt.Sprintf("<13>Nov 26 06:14:07 host%d bench[42]: run seq=%09d ", i%16, i)
		return l + pad[:199-len(l)] + "\n"
	}
	c, err := net.Dial("tcp", s.TCPAddress().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	w := bufio.NewWriterSize(c, 256<<10)
	b.SetBytes(200)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if _, err := w.WriteString(line(i)); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	for testutil.ToFloat64(st.Published) < float64(b.N) {
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("%v of %d records stored after 5 minutes", testutil.ToFloat64(st.Published), b.N)
		}
		time.Sleep(time.Millisecond)
	}
	el := time.Since(start)
	b.ReportMetric(float64(b.N)/el.Seconds(), "lines/s")
}
