package config

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Config is the whole herald configuration. Every key is documented on its
// field; the default is the value Default returns.
type Config struct {
	// Log sets herald's own log output.
	Log Log `yaml:"log"`
	// Bus says which NATS system carries the stages: the embedded server
	// (default) or an external cluster.
	Bus Bus `yaml:"bus"`
	// Batch says how events are grouped into JetStream messages between stages.
	Batch Batch `yaml:"batch"`
	// Metrics is the HTTP endpoint for /metrics, /healthz and /readyz.
	Metrics Metrics `yaml:"metrics"`
	// Receivers are the listeners that accept records, by name.
	Receivers map[string]*Receiver `yaml:"receivers"`
	// Targets are the destinations events are routed to, by name. Each has a
	// bit in the target mask and a fail-over chain of sinks.
	Targets map[string]*Target `yaml:"targets"`
	// Sinks are the writers, by name; a sink may serve several targets.
	Sinks map[string]*Sink `yaml:"sinks"`
	// Resolver configures the stage that makes each event final: templates,
	// the R_ attributes it fills, their time format and zone.
	Resolver Resolver `yaml:"resolver"`
	// Archive keeps a copy of every resolved event for herald replay, in
	// a stream of its own; its keys say what it costs in disk and memory
	// (measured: BENCHMARKS.md, Archive cost). Default off.
	Archive Archive `yaml:"archive"`
	// Rules set the target mask of records from receivers by their
	// attributes (facility, severity, class, host, program ...), in order,
	// first match wins. Default: none (each receiver's target_mask).
	Rules []Rule `yaml:"rules"`
	// ShutdownTimeout bounds a graceful stop: receivers stop, then each
	// stage finishes what is queued for it before the next one stops.
	// What is left when it runs out stays in JetStream for the next start.
	// Default 30s.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// MemoryLimit is a soft limit for herald's Go heap: near it the garbage
	// collector works harder instead of letting the process grow. 0 leaves
	// the Go default (no limit); the GOMEMLIMIT environment variable, when
	// set, wins. Default 170MiB.
	MemoryLimit Size `yaml:"memory_limit"`
	// FuseStages hands events from a stage to the next one in memory when
	// both run in this process (classifier, resolver, router), instead of
	// through the herald.events and herald.resolved streams: about a third
	// less CPU per event. Nothing is lost either way: a stage's input is
	// acked only once the last fused stage's outputs are stored. Those
	// streams still carry what applications publish and what stages in
	// other processes send, and only that is what `herald tap` sees there.
	// false publishes every stage's output. Default true.
	FuseStages bool `yaml:"fuse_stages"`

	// Path is the config file's path; Dir its folder, against which relative
	// paths were resolved.
	Path string `yaml:"-"`
	Dir  string `yaml:"-"`
}

// Log configures herald's own logging.
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is text or json. Default text.
	Format string `yaml:"format"`
}

// Bus configures NATS.
type Bus struct {
	// URLs of an external NATS system. When set, no embedded server runs.
	// Default: empty (embedded).
	URLs []string `yaml:"urls"`
	// Embedded configures the in-process NATS server used when URLs is empty.
	Embedded Embedded `yaml:"embedded"`
	// AckWait is how long a stage may hold a message before JetStream
	// delivers it again; it is also about how long recovery after a crash
	// takes. Default 10s.
	AckWait Duration `yaml:"ack_wait"`
	// MaxDeliver is how often a message is delivered before it is
	// dead-lettered. Default 20.
	MaxDeliver int `yaml:"max_deliver"`
	// Duplicates is the de-duplication window of every stream: a republish
	// within it under the same Nats-Msg-Id is dropped. Must exceed ack_wait
	// plus a restart. Default 2m.
	Duplicates Duration `yaml:"duplicates"`
	// Replicas of each stream and key-value bucket: 1 on a single server
	// or a leafnode branch; 3 in a cluster of three or more servers (the
	// streams survive the loss of one); in a supercluster, counted within
	// the one cluster the streams live in (bus.placement). Every process
	// should give the same. Default 1.
	Replicas int `yaml:"replicas"`
	// Placement puts herald's streams and key-value buckets in one cluster
	// of a supercluster, or on the servers with given tags. Every process
	// should give the same: a process declaring another placement moves the
	// streams. Default: none (a stream lives in the cluster of the server
	// that received the request creating it).
	Placement Placement `yaml:"placement"`
	// LeaseTTL is how long the lease of a single-writer sink (a file, an
	// XMPP account) outlives a holder that died: then another process
	// running the sink stage takes the sink over. At least 1s; every
	// process should use the same. Default 5s (0 means 5s).
	LeaseTTL Duration `yaml:"lease_ttl"`
	// Credentials is a NATS .creds file (JWT and seed) for bus.urls,
	// relative to the config file. Default none.
	Credentials string `yaml:"credentials"`
	// NkeySeedFile is a file holding a user nkey seed (SU…) herald signs
	// with. Default none.
	NkeySeedFile string `yaml:"nkey_seed_file"`
	// User to connect as, with password_file or password_env. Default none.
	User string `yaml:"user"`
	// PasswordFile is a file whose first line is bus.user's password.
	// Default none.
	PasswordFile string `yaml:"password_file"`
	// PasswordEnv names an environment variable holding bus.user's password
	// instead. Default none.
	PasswordEnv string `yaml:"password_env"`
	// TokenFile is a file whose first line is the token to connect with.
	// Default none. Without any of these keys herald's tools use the
	// embedded server's auth when they connect to it.
	TokenFile string `yaml:"token_file"`
	// TLS for the connection: the server is always verified unless
	// insecure_skip_verify. Default: TLS when the server requires it,
	// verified against the system's roots.
	TLS ClientTLS `yaml:"tls"`
	// EdgeDomains are JetStream domains of leafnode edges (servers with
	// bus.embedded.leafnode.forward) whose raw records this system's
	// HERALD_RAW takes over; each edge keeps its records until they are
	// stored here. Default none.
	EdgeDomains []string `yaml:"edge_domains"`
}

// Embedded configures the embedded NATS server.
type Embedded struct {
	// Listen is the client address other herald processes and applications
	// connect to. Empty disables the listener (in-process only).
	// Default 127.0.0.1:4222.
	Listen string `yaml:"listen"`
	// DataDir holds JetStream's files. Default var/nats.
	DataDir string `yaml:"data_dir"`
	// SyncInterval is how often JetStream fsyncs: "always" makes every ack
	// survive a power cut (about 10x slower); a duration such as 1s bounds the
	// loss on power cut. Empty keeps the server default (2m). An ack always
	// survives kill -9 of herald.
	SyncInterval string `yaml:"sync_interval"`
	// MaxPayload is the largest message the server accepts. Default 8MiB.
	MaxPayload Size `yaml:"max_payload"`
	// MaxStore caps JetStream's disk use. Default 10GiB. herald divides it
	// so that a full store never stops the pipeline for good: 1/16 of it
	// (at least 8MiB, at most 1/4) is left for leases, other key-value
	// buckets, dead letters (half of it, as HERALD_DLQ's max_bytes: when
	// it is full a new dead letter is refused and its batch waits, none
	// is dropped) and receipts (a quarter: the oldest go first), and the
	// rest, less the
	// archive's max_bytes, goes to the work streams as their max_bytes:
	// 3/8 each to the raw records and the targets' queues, 1/8 each to the
	// two in between (with every stage in one process only the first two
	// fill, so a sink that is down can fall behind by about 70% of
	// max_store). When a work stream is full its writers wait: receivers
	// stop reading TCP syslog, leave RELP records unacknowledged and
	// answer HTTP posts 503 naming the limit (log warning,
	// herald_receiver_store_full), stages hold their input, applications'
	// publishes are refused; everything resumes as the sink drains. Below
	// 40MiB (plus the archive's max_bytes) there are no budgets, and a
	// full store may stop the pipeline until space is freed. The
	// receivers also stop at 90% of the whole store.
	MaxStore Size `yaml:"max_store"`
	// ServerName names this server in a cluster, supercluster or leafnode
	// topology; unique per server, required in a cluster. Default "herald".
	ServerName string `yaml:"server_name"`
	// Cluster joins a cluster of peers (routes). Default: none.
	Cluster Cluster `yaml:"cluster"`
	// Gateway links this cluster to others (a supercluster). Default: none.
	Gateway Gateway `yaml:"gateway"`
	// Leafnode makes this server a hub (listen) or an edge (remotes).
	// Default: none.
	Leafnode Leafnode `yaml:"leafnode"`
	// Tags label this server so that bus.placement.tags (of any herald)
	// can choose or exclude it, e.g. [ssd, "az:1"]; case does not matter.
	// Default none.
	Tags []string `yaml:"tags"`
	// JetStreamDomain separates this server's JetStream from the one
	// across a leafnode link, so an edge stores locally while the link is
	// down. Default "" (one JetStream across the links).
	JetStreamDomain string `yaml:"jetstream_domain"`
	// Auth makes clients of the listener authenticate. Default: none.
	Auth EmbeddedAuth `yaml:"auth"`
	// TLS on the client listener. Default: none (plain TCP).
	TLS ServerTLS `yaml:"tls"`
}

// Batch configures batching between stages.
type Batch struct {
	// MaxEvents per batch. Default 1000.
	MaxEvents int `yaml:"max_events"`
	// MaxBytes per batch, encoded; kept well under the payload limit because
	// events grow from hop to hop. Default 256KiB.
	MaxBytes Size `yaml:"max_bytes"`
	// Linger is how long a receiver waits to fill a batch before sending it
	// anyway. At low rates a batch holds one event. Default 5ms.
	Linger Duration `yaml:"linger"`
}

// Metrics configures the HTTP endpoint.
type Metrics struct {
	// Listen address for /metrics, /healthz and /readyz; empty disables it.
	// Default 127.0.0.1:9464.
	Listen string `yaml:"listen"`
	// Pprof serves Go's profiler under /debug/pprof/ on the same address.
	// Default false.
	Pprof bool `yaml:"pprof"`
	// TokenFile names a file holding a token that /metrics, /reload and
	// /debug/pprof/ then require as "Authorization: Bearer <token>";
	// /healthz and /readyz stay open for probes. Default none (no token).
	TokenFile string `yaml:"token_file"`
	// TokenEnv names an environment variable holding that token instead.
	// Default none.
	TokenEnv string `yaml:"token_env"`
}

// Receiver is one configured intake. Type selects the kind; Options holds the
// kind's own keys, decoded strictly into the struct the kind registered.
type Receiver struct {
	// Type of receiver: syslog.
	Type    string `yaml:"type"`
	Options any    `yaml:"-"`
}

// Target is one routing destination.
type Target struct {
	// Bit is this target's value in the event target mask (a power of two:
	// debug=1, audit=2, log=4 by convention).
	Bit uint64 `yaml:"bit"`
	// Sinks is the fail-over chain, in order of preference: events go to
	// the first sink that is up, and back to it when it revives.
	Sinks []string `yaml:"sinks"`
	// Filter is an expression over the event that must also be true for
	// the target to get it, beyond the mask, such as 'severity <= 4' (names:
	// docs/filters.md). An event the filter cannot judge is dead-lettered.
	// Default: none (the mask alone decides).
	Filter string `yaml:"filter"`
}

// Sink is one configured writer; Options holds the provider's own keys.
type Sink struct {
	// Type of sink: file.
	Type    string `yaml:"type"`
	Options any    `yaml:"-"`
}

// Address is a socket a receiver listens on. Receiver options that listen
// implement Addresses() []Address; config then checks each host:port and
// refuses an address used twice, by one receiver or by two.
type Address struct {
	Field   string // the key, relative to the receiver: "tcp", "tls"
	Network string // "tcp", "udp" or "unix": TCP and UDP may share a port
	Addr    string // host:port, or a socket path for "unix"; "" is skipped
}

// Masked is implemented by receiver options that give their records a
// target mask, so that config can check its bits belong to targets.
type Masked interface{ Mask() uint64 }

// Default returns the configuration herald uses for keys a file leaves out.
func Default() *Config {
	return &Config{
		Log:        Log{Level: "info", Format: "text"},
		FuseStages: true,
		Bus: Bus{
			Embedded: Embedded{
				Listen:     "127.0.0.1:4222",
				DataDir:    "var/nats",
				MaxPayload: 8 << 20,
				MaxStore:   10 << 30,
			},
			AckWait:    Duration(10 * time.Second),
			MaxDeliver: 20,
			Duplicates: Duration(2 * time.Minute),
			Replicas:   1,
		},
		Batch:           Batch{MaxEvents: 1000, MaxBytes: 256 << 10, Linger: Duration(5 * time.Millisecond)},
		Metrics:         Metrics{Listen: "127.0.0.1:9464"},
		ShutdownTimeout: Duration(30 * time.Second),
		MemoryLimit:     170 << 20,
		Resolver:        defaultResolver(),
	}
}

// Kinds maps the type names of receivers and sinks to constructors of their
// option structs, pre-filled with defaults. The registry of sink providers
// supplies Sinks, so the config package needs no import of them.
type Kinds struct {
	Receivers map[string]func() any
	Sinks     map[string]func() any
}

// Load reads, decodes and validates the file at path. The error, when not
// nil, is an *Errors listing every problem found.
func Load(path string, kinds Kinds) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data, kinds)
}

// Parse is Load for bytes already read; path names them in errors and gives
// the folder relative paths resolve against.
func Parse(path string, data []byte, kinds Kinds) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config path %s: %w", path, err)
	}
	cfg := Default()
	cfg.Path, cfg.Dir = abs, filepath.Dir(abs)
	d := &decoder{file: path, kinds: kinds, pos: map[string]Pos{}}
	d.decodeFile(data, cfg)
	if !d.syntax && (len(d.errs) == 0 || len(d.pos) > 0) {
		d.validate(cfg)
	}
	d.sortErrors()
	if len(d.errs) > 0 {
		return nil, &Errors{List: d.errs}
	}
	cfg.resolvePaths()
	return cfg, nil
}

// resolvePaths makes every relative path absolute against the file's folder.
func (c *Config) resolvePaths() {
	c.Bus.Embedded.DataDir = c.Abs(c.Bus.Embedded.DataDir)
	c.resolveBusPaths()
}

// Abs resolves p against the config file's folder unless it is absolute or
// one of the special names stdout/stderr.
func (c *Config) Abs(p string) string {
	if p == "" || p == "stdout" || p == "stderr" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.Dir, p)
}

// TargetNames returns the target names sorted.
func (c *Config) TargetNames() []string {
	names := make([]string, 0, len(c.Targets))
	for n := range c.Targets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

var nameOK = func(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// validate checks values whose types were fine but whose meaning is not.
func (d *decoder) validate(c *Config) {
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		d.errorf("log.level", "want debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		d.errorf("log.format", "want text or json, got %q", c.Log.Format)
	}
	if len(c.Bus.URLs) == 0 {
		if c.Bus.Embedded.Listen != "" {
			d.checkAddr("bus.embedded.listen", c.Bus.Embedded.Listen)
		}
		if c.Bus.Embedded.DataDir == "" {
			d.errorf("bus.embedded.data_dir", "must not be empty")
		}
		switch s := c.Bus.Embedded.SyncInterval; s {
		case "", "always":
		default:
			if v, err := time.ParseDuration(s); err != nil || v <= 0 {
				d.errorf("bus.embedded.sync_interval", "want \"always\" or a duration such as 1s, got %q", s)
			}
		}
		if c.Bus.Embedded.MaxPayload < 1<<20 || c.Bus.Embedded.MaxPayload > 64<<20 {
			d.errorf("bus.embedded.max_payload", "want 1MiB to 64MiB, got %d", c.Bus.Embedded.MaxPayload)
		}
	}
	for i, u := range c.Bus.URLs {
		if !strings.Contains(u, "://") {
			d.errorf(fmt.Sprintf("bus.urls[%d]", i), "want a URL such as nats://host:4222, got %q", redactURL(u))
		}
	}
	if c.Bus.AckWait.D() < time.Second {
		d.errorf("bus.ack_wait", "want at least 1s, got %s", c.Bus.AckWait.D())
	}
	if c.Bus.MaxDeliver < 2 {
		d.errorf("bus.max_deliver", "want at least 2, got %d", c.Bus.MaxDeliver)
	}
	if c.Bus.Duplicates.D() <= c.Bus.AckWait.D() {
		d.errorf("bus.duplicates", "must exceed bus.ack_wait (%s) or redeliveries escape de-duplication", c.Bus.AckWait.D())
	}
	if c.Bus.LeaseTTL != 0 && c.Bus.LeaseTTL.D() < time.Second {
		d.errorf("bus.lease_ttl", "want at least 1s, got %s", c.Bus.LeaseTTL.D())
	}
	if c.Bus.Replicas < 1 || c.Bus.Replicas > 5 {
		d.errorf("bus.replicas", "want 1 to 5, got %d", c.Bus.Replicas)
	}
	if c.Batch.MaxEvents < 1 || c.Batch.MaxEvents > 100000 {
		d.errorf("batch.max_events", "want 1 to 100000, got %d", c.Batch.MaxEvents)
	}
	if c.Batch.MaxBytes < 1<<10 || c.Batch.MaxBytes > 1<<20 {
		d.errorf("batch.max_bytes", "want 1KiB to 1MiB, got %d", c.Batch.MaxBytes)
	}
	if c.Batch.Linger.D() > time.Second {
		d.errorf("batch.linger", "want at most 1s, got %s", c.Batch.Linger.D())
	}
	if c.Metrics.Listen != "" {
		d.checkAddr("metrics.listen", c.Metrics.Listen)
	}
	if c.Metrics.TokenFile != "" && c.Metrics.TokenEnv != "" {
		d.errorf("metrics.token_env", "give token_file or token_env, not both")
	}
	listens := map[string]string{}
	for _, name := range sortedKeys(c.Receivers) {
		r := c.Receivers[name]
		p := "receivers." + name
		if !nameOK(name) {
			d.errorf(p, "name %q: use letters, digits, _ and -", name)
		}
		if a, ok := r.Options.(interface{ Addresses() []Address }); ok {
			for _, l := range a.Addresses() {
				if l.Addr == "" {
					continue
				}
				if l.Network != "unix" {
					d.checkAddr(p+"."+l.Field, l.Addr)
				}
				k := l.Network + " " + l.Addr
				if other, dup := listens[k]; dup {
					d.errorf(p+"."+l.Field, "%s %s is already used by %s", l.Network, l.Addr, other)
				}
				listens[k] = p + "." + l.Field
			}
		}
		if v, ok := r.Options.(interface{ Validate() []FieldError }); ok {
			for _, fe := range v.Validate() {
				d.errorf(p+"."+fe.Field, "%s", fe.Reason)
			}
		}
	}
	if len(c.Targets) == 0 {
		d.errorf("targets", "at least one target is needed")
	}
	bits := map[uint64]string{}
	for _, name := range sortedKeys(c.Targets) {
		t := c.Targets[name]
		p := "targets." + name
		if !nameOK(name) {
			d.errorf(p, "name %q: use letters, digits, _ and -", name)
		}
		if t.Bit == 0 || t.Bit&(t.Bit-1) != 0 {
			d.errorf(p+".bit", "want a power of two (1, 2, 4, 8 ...), got %d", t.Bit)
		} else if other, dup := bits[t.Bit]; dup {
			d.errorf(p+".bit", "bit %d is already used by target %s", t.Bit, other)
		}
		bits[t.Bit] = name
		if len(t.Sinks) == 0 {
			d.errorf(p+".sinks", "a target needs at least one sink")
		}
		for i, s := range t.Sinks {
			if _, ok := c.Sinks[s]; !ok {
				d.errorf(fmt.Sprintf("%s.sinks[%d]", p, i), "no sink named %q is defined under sinks", s)
			}
		}
	}
	d.validateRouting(c)
	d.validateArchive(c)
	d.validateBusTopology(c)
	d.validateResolver(c)
	for _, name := range sortedKeys(c.Sinks) {
		if !nameOK(name) {
			d.errorf("sinks."+name, "name %q: use letters, digits, _ and -", name)
		}
		if v, ok := c.Sinks[name].Options.(interface{ Validate() []FieldError }); ok {
			for _, fe := range v.Validate() {
				d.errorf("sinks."+name+"."+fe.Field, "%s", fe.Reason)
			}
		}
	}
}

// FieldError is a problem an option struct's Validate reports about one of
// its keys, relative to the struct.
type FieldError struct {
	Field, Reason string
}

func (d *decoder) checkAddr(path, addr string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		d.errorf(path, "want host:port, got %q", addr)
		return
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		d.errorf(path, "port %q is not a number from 0 to 65535", port)
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		d.errorf(path, "host %q is not an IP address", host)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
