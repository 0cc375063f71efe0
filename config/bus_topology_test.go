package config

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// withBus is a valid config whose bus section is bus (indented as under
// "bus:").
func withBus(bus string) string {
	return "bus:\n" + bus + `
targets:
  log: {bit: 4, sinks: [events]}
sinks:
  events: {type: file, path: out.jsonl}
`
}

func TestTopologiesThatMakeSenseAreAccepted(t *testing.T) {
	for _, tc := range []struct{ name, bus string }{
		{"a node of a three-node cluster with R3 streams", `
  replicas: 3
  embedded:
    server_name: herald-1
    cluster:
      name: herald
      listen: 10.0.0.1:6222
      routes: [nats-route://10.0.0.1:6222, nats-route://10.0.0.2:6222, nats-route://10.0.0.3:6222]
`},
		{"a node of a supercluster, its gateway named after its cluster", `
  embedded:
    server_name: east-1
    cluster: {name: east, listen: 0.0.0.0:6222, routes: [nats-route://10.0.0.1:6222]}
    gateway:
      name: east
      listen: 0.0.0.0:7222
      gateways: [{name: west, urls: [nats://10.1.0.1:7222]}]
`},
		{"a forwarding edge", `
  embedded:
    server_name: branch1
    jetstream_domain: branch1
    leafnode:
      forward: true
      remotes: [{urls: [nats-leaf://hub.example:7422], credentials: branch1.creds}]
`},
		{"a hub taking over two edges' records", `
  edge_domains: [branch1, branch2]
  embedded:
    jetstream_domain: hub
    leafnode: {listen: 0.0.0.0:7422}
`},
		{"an external cluster with a creds file and a CA", `
  urls: [tls://n1.example:4222, tls://n2.example:4222]
  replicas: 3
  credentials: herald.creds
  tls: {ca_file: ca.pem}
`},
		{"a supercluster node placing the streams in the other cluster, on tagged servers", `
  replicas: 3
  placement: {cluster: west, tags: [ssd, "!spinning"]}
  embedded:
    server_name: east-1
    tags: [ssd, "az:1"]
    cluster: {name: east, listen: 0.0.0.0:6222, routes: [nats-route://10.0.0.1:6222]}
    gateway:
      name: east
      listen: 0.0.0.0:7222
      gateways: [{name: west, urls: [nats://10.1.0.1:7222]}]
`},
		{"an external system with the streams placed in one of its clusters", `
  urls: [nats://n1.example:4222]
  placement: {cluster: dc1}
`},
		{"an embedded listener with a user, TLS and client certificates", `
  embedded:
    listen: 0.0.0.0:4222
    auth: {user: herald, password_env: HERALD_NATS_PASSWORD}
    tls: {cert_file: server.crt, key_file: server.key, ca_file: ca.pem, verify_clients: true}
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse("/etc/herald/herald.yaml", []byte(withBus(tc.bus)), testKinds); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSecretFilesResolveAgainstTheConfigFolder(t *testing.T) {
	cfg, err := Parse("/etc/herald/herald.yaml", []byte(withBus(`
  urls: [nats://n1.example:4222]
  credentials: secrets/herald.creds
  tls: {ca_file: /etc/ssl/ca.pem, cert_file: c.crt, key_file: c.key}
  embedded:
    leafnode:
      remotes: [{urls: [nats-leaf://hub:7422], credentials: leaf.creds}]
`)), testKinds)
	if err != nil {
		t.Fatal(err)
	}
	for got, want := range map[string]string{
		cfg.Bus.Credentials: "/etc/herald/secrets/herald.creds",
		cfg.Bus.TLS.CAFile:  "/etc/ssl/ca.pem",
		cfg.Bus.TLS.KeyFile: "/etc/herald/c.key",
		cfg.Bus.Embedded.Leafnode.Remotes[0].Credentials: "/etc/herald/leaf.creds",
	} {
		if got != filepath.FromSlash(want) {
			t.Errorf("%s, want %s", got, want)
		}
	}
}

func TestTopologyMistakesAreReportedAtTheirKey(t *testing.T) {
	for _, tc := range []struct {
		name, bus string
		field     string // the key path of the one expected error
		line      int
	}{
		{"a gateway must carry its cluster's name", `
  embedded:
    server_name: east-1
    cluster: {name: east, listen: 127.0.0.1:6222, routes: [nats-route://127.0.0.1:6222]}
    gateway:
      name: west
      listen: 127.0.0.1:7222
`, "bus.embedded.gateway.name", 6},
		{"a gateway needs a cluster", `
  embedded:
    gateway: {name: east, listen: 127.0.0.1:7222}
`, "bus.embedded.cluster.name", 3},
		{"a cluster node needs a name of its own", `
  embedded:
    cluster: {name: herald, listen: 127.0.0.1:6222, routes: [nats-route://127.0.0.1:6222]}
`, "bus.embedded.server_name", 3},
		{"a cluster needs routes, or JetStream will not start", `
  embedded:
    server_name: a
    cluster: {name: herald, listen: 127.0.0.1:6222}
`, "bus.embedded.cluster.routes", 4},
		{"a route is a nats-route URL with a port", `
  embedded:
    server_name: a
    cluster:
      name: herald
      listen: 127.0.0.1:6222
      routes: [nats-route://127.0.0.1:6222, http://10.0.0.2:6222]
`, "bus.embedded.cluster.routes[1]", 7},
		{"three replicas need a cluster", `
  replicas: 3
`, "bus.replicas", 2},
		{"a single server cannot place its streams", `
  placement: {cluster: east}
`, "bus.placement", 2},
		{"a cluster without a gateway can place streams only in itself", `
  embedded:
    server_name: a
    cluster: {name: east, listen: 127.0.0.1:6222, routes: [nats-route://127.0.0.1:6222]}
  placement:
    cluster: west
`, "bus.placement.cluster", 6},
		{"a placement tag is a word", `
  urls: [nats://n1:4222]
  placement:
    tags: [ssd, "fast disk"]
`, "bus.placement.tags[1]", 4},
		{"a placement tag is given once, excluded or not", `
  urls: [nats://n1:4222]
  placement:
    tags: [SSD, "!ssd"]
`, "bus.placement.tags[1]", 4},
		{"a server's own tag cannot start with the exclusion mark", `
  embedded:
    tags: ["!ssd"]
`, "bus.embedded.tags[0]", 3},
		{"forwarding needs a JetStream domain", `
  embedded:
    leafnode:
      forward: true
      remotes: [{urls: [nats-leaf://hub:7422]}]
`, "bus.embedded.leafnode.forward", 4},
		{"the gateway to another cluster needs its URLs", `
  embedded:
    server_name: a
    cluster: {name: east, listen: 127.0.0.1:6222, routes: [nats-route://127.0.0.1:6222]}
    gateway: {name: east, listen: 127.0.0.1:7222, gateways: [{name: west}]}
`, "bus.embedded.gateway.gateways[0].urls", 5},
		{"a password needs its user", `
  password_file: pw
`, "bus.user", 2},
		{"one kind of credentials at a time", `
  urls: [nats://n1:4222]
  credentials: a.creds
  token_file: token
`, "bus.token_file", 4},
		{"an embedded password from a file or the environment, not both", `
  embedded:
    auth: {user: herald, password_file: pw, password_env: PW}
`, "bus.embedded.auth.password_env", 3},
		{"a seed is never an allowed nkey", `
  embedded:
    auth:
      nkeys: [SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY]
`, "bus.embedded.auth.nkeys[0]", 4},
		{"verifying clients needs the CA to verify them with", `
  embedded:
    tls: {cert_file: s.crt, key_file: s.key, verify_clients: true}
`, "bus.embedded.tls.ca_file", 3},
		{"a certificate needs its key", `
  urls: [tls://n1:4222]
  tls: {cert_file: c.crt}
`, "bus.tls", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("h.yaml", []byte(withBus(tc.bus)), testKinds)
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("err = %v, want *Errors", err)
			}
			if len(errs.List) != 1 || errs.List[0].Field != tc.field {
				t.Fatalf("errors:\n%v\nwant one, at %s", err, tc.field)
			}
			// withBus puts "bus:" on line 1 and the section from line 3;
			// tc.line+1 is the file's line of the key, or of its nearest
			// parent when the key is missing.
			if got := errs.List[0].Pos.Line; got != tc.line+1 {
				t.Errorf("%v: line %d, want %d", errs.List[0], got, tc.line+1)
			}
		})
	}
}

func TestSecretsInURLsAreNeverEchoed(t *testing.T) {
	const secret = "s3cret-value"
	_, err := Parse("h.yaml", []byte(withBus(`
  urls: [nats://herald:`+secret+`@n1:4222, herald:`+secret+`@n2:4222]
  embedded:
    leafnode:
      remotes: [{urls: ["nats-leaf://`+secret+`@hub:7422"]}]
`)), testKinds)
	if err == nil {
		t.Fatal("URLs with secrets were accepted")
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("the errors show the secret:\n%v", err)
	}
	var errs *Errors
	errors.As(err, &errs)
	fields := map[string]bool{}
	for _, e := range errs.List {
		fields[e.Field] = true
	}
	for _, f := range []string{"bus.urls[0]", "bus.urls[1]"} {
		if !fields[f] {
			t.Errorf("no error at %s:\n%v", f, err)
		}
	}
}

func TestRedactURLHidesUserInformation(t *testing.T) {
	for in, want := range map[string]string{
		"nats://n1:4222":               "nats://n1:4222",
		"nats://user:pw@n1:4222":       "nats://REDACTED@n1:4222",
		"nats://token@n1:4222":         "nats://REDACTED@n1:4222",
		"user:pw@n1:4222":              "REDACTED@n1:4222",
		"nats://u:p@ss@n1:4222":        "nats://REDACTED@n1:4222",
		"nats-leaf://hub.example:7422": "nats-leaf://hub.example:7422",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
