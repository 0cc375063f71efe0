package receiver_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/herald-router/herald/actors/receiver"
	"github.com/herald-router/herald/actors/receiver/relp"
	"github.com/herald-router/herald/config"
)

type fileSink struct {
	Path string `yaml:"path"`
}

func kinds() config.Kinds {
	r := receiver.NewRegistry()
	receiver.RegisterSyslog(r)
	relp.Register(r)
	return config.Kinds{Receivers: r.ConfigKinds(), Sinks: map[string]func() any{"file": func() any { return &fileSink{} }}}
}

const tail = `
targets:
  log: {bit: 4, sinks: [events]}
sinks:
  events: {type: file, path: x}
`

func TestAConfigFromBeforeTheMoveLoadsUnchanged(t *testing.T) {
	cfg, err := config.Parse("h.yaml", []byte(`receivers:
  syslog: {type: syslog, tcp: 127.0.0.1:5514, udp: 127.0.0.1:5514, max_message_size: 64KiB, max_connections: 1024, target_mask: 4}
`+tail), kinds())
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.Receivers["syslog"].Options.(*receiver.SyslogOptions)
	want := receiver.DefaultSyslogOptions()
	want.TCP, want.UDP = "127.0.0.1:5514", "127.0.0.1:5514"
	if *o != *want {
		t.Errorf("options = %+v,\nwant %+v", o, want)
	}
}

func TestConfigRefusesAnAddressUsedTwice(t *testing.T) {
	for _, tc := range []struct {
		name, receivers, want string
	}{
		{"one tcp port for syslog and relp", `
  a: {type: syslog, tcp: 127.0.0.1:5514}
  b: {type: relp, listen: 127.0.0.1:5514}`, `field "receivers.b.listen": tcp 127.0.0.1:5514 is already used by receivers.a.tcp`},
		{"one port for tls and tcp of one receiver", `
  a: {type: syslog, tcp: 127.0.0.1:5514, tls: 127.0.0.1:5514, tls_options: {cert_file: c, key_file: k}}`, `field "receivers.a.tls": tcp 127.0.0.1:5514 is already used by receivers.a.tcp`},
		{"one unix socket path twice", `
  a: {type: syslog, unix: log}
  b: {type: syslog, unix_stream: log}`, `field "receivers.b.unix_stream": unix log is already used by receivers.a.unix`},
		{"a bad port", `
  a: {type: syslog, udp: 127.0.0.1:99999}`, `field "receivers.a.udp": port "99999"`},
		{"mask bits of no target", `
  a: {type: relp, listen: 127.0.0.1:2514, target_mask: 12}`, `field "receivers.a.target_mask": bits 8 belong to no target`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse("h.yaml", []byte("receivers:"+tc.receivers+tail), kinds())
			var ce *config.Errors
			if !errors.As(err, &ce) || !strings.Contains(ce.Error(), tc.want) {
				t.Errorf("err = %v, want %s", err, tc.want)
			}
		})
	}
	_, err := config.Parse("h.yaml", []byte(`receivers:
  a: {type: syslog, tcp: 127.0.0.1:5514, udp: 127.0.0.1:5514}
`+tail), kinds())
	if err != nil {
		t.Errorf("tcp and udp on one port: %v", err)
	}
}
