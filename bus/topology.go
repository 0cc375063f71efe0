package bus

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-router/herald/config"
)

// The NATS topology of the embedded server (cluster, gateway, leafnode,
// JetStream domain), its client auth and TLS, and the credentials herald
// presents as a client. Secrets are read here from the files and
// environment variables the config names; an error names the key and the
// file or variable, never what it holds.

// ErrSecret is wrapped by every error about a secret herald could not read.
var ErrSecret = errors.New("secret unavailable")

// readSecret returns the first line of file, or the value of the
// environment variable env; key names the config key in errors.
func readSecret(key, file, env string) (string, error) {
	if env != "" {
		v, ok := os.LookupEnv(env)
		if !ok || strings.TrimSpace(v) == "" {
			return "", fmt.Errorf("%s: environment variable %s is not set or empty: %w", key, env, ErrSecret)
		}
		return strings.TrimSpace(v), nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is already in the message
		}
		return "", fmt.Errorf("%s %s: %v: %w", key, file, err, ErrSecret)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	line = strings.TrimSpace(line)
	if line == "" {
		return "", fmt.Errorf("%s %s: the file is empty: %w", key, file, ErrSecret)
	}
	return line, nil
}

// hostPort splits a listen address into the server's host and port; port 0
// picks a free one.
func hostPort(key, addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%s %q: %w", key, addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return "", 0, fmt.Errorf("%s %q: %w", key, addr, err)
	}
	if n == 0 {
		n = server.RANDOM_PORT
	}
	return host, n, nil
}

func parseURLs(key string, raws []string) ([]*url.URL, error) {
	out := make([]*url.URL, 0, len(raws))
	for _, r := range raws {
		u, err := url.Parse(r)
		if err != nil {
			return nil, fmt.Errorf("%s %q: not a URL", key, config.RedactURL(r))
		}
		out = append(out, u)
	}
	return out, nil
}

// forwardIsolated are the subjects a forwarding edge keeps on its side of
// the leafnode link, both ways: herald's pipeline subjects (each side has
// its own streams for them, and a record must be stored once, on the edge)
// and JetStream's acks (both sides have consumers of the same names, and an
// ack must reach only the server that delivered). The forwarding consumer's
// deliveries and flow control use other subjects and cross.
var forwardIsolated = []string{
	SubjectRawPrefix + ">", SubjectEventsPrefix + ">", SubjectResolved, SubjectTargetPrefix + ">",
	SubjectDLQPrefix + ">", SubjectReceiptsPrefix + ">", SubjectArchive, "$JS.ACK.>",
}

// ConsumerForward is the durable consumer on a forwarding edge's raw
// stream that the hub's raw stream sources from.
const ConsumerForward = "forward"

// forwardSubject is where an edge's forwarding consumer delivers; the hub
// subscribes to it over the leafnode link.
func forwardSubject(domain string) string { return "herald.forward." + domain }

// applyTopology sets the server options of the cluster, gateway, leafnode,
// domain, auth and TLS keys. It returns the in-process client options
// herald's own connection needs to pass the auth it set up.
func applyTopology(e config.Embedded, o *server.Options) ([]nats.Option, error) {
	o.ServerName = "herald"
	if e.ServerName != "" {
		o.ServerName = e.ServerName
	}
	o.JetStreamDomain = e.JetStreamDomain
	o.Tags.Add(e.Tags...) // lower-cased, as placement compares them
	if c := e.Cluster; c.Name != "" {
		host, port, err := hostPort("cluster.listen", c.Listen)
		if err != nil {
			return nil, err
		}
		o.Cluster = server.ClusterOpts{Name: c.Name, Host: host, Port: port}
		if o.Routes, err = parseURLs("cluster.routes", c.Routes); err != nil {
			return nil, err
		}
	}
	if g := e.Gateway; g.Name != "" {
		host, port, err := hostPort("gateway.listen", g.Listen)
		if err != nil {
			return nil, err
		}
		o.Gateway = server.GatewayOpts{Name: g.Name, Host: host, Port: port}
		for _, r := range g.Gateways {
			urls, err := parseURLs("gateway.gateways."+r.Name, r.URLs)
			if err != nil {
				return nil, err
			}
			o.Gateway.Gateways = append(o.Gateway.Gateways, &server.RemoteGatewayOpts{Name: r.Name, URLs: urls})
		}
	}
	l := e.Leafnode
	if l.Listen != "" {
		host, port, err := hostPort("leafnode.listen", l.Listen)
		if err != nil {
			return nil, err
		}
		o.LeafNode.Host, o.LeafNode.Port = host, port
	}
	for i, r := range l.Remotes {
		urls, err := parseURLs(fmt.Sprintf("leafnode.remotes[%d]", i), r.URLs)
		if err != nil {
			return nil, err
		}
		ro := &server.RemoteLeafOpts{URLs: urls, Credentials: r.Credentials}
		for _, u := range urls {
			ro.TLS = ro.TLS || u.Scheme == "tls"
		}
		if l.Forward {
			ro.DenyExports, ro.DenyImports = forwardIsolated, forwardIsolated
		}
		o.LeafNode.Remotes = append(o.LeafNode.Remotes, ro)
	}
	if len(l.Remotes) > 0 {
		// The default (1s) is fine; said here because it bounds how soon an
		// edge notices that its hub is back.
		o.LeafNode.ReconnectInterval = time.Second
	}
	if t := e.TLS; t.CertFile != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: t.CertFile, KeyFile: t.KeyFile, CaFile: t.CAFile, Verify: t.VerifyClients})
		if err != nil {
			return nil, fmt.Errorf("bus.embedded.tls: %w", err)
		}
		o.TLS, o.TLSConfig, o.TLSVerify, o.TLSTimeout = true, tc, t.VerifyClients, 2
	}
	return applyAuth(e.Auth, o)
}

// applyAuth configures the client listener's auth. herald's own
// in-process connection presents the same user or token; with nkeys it is
// a user of its own whose random password exists only in this process.
func applyAuth(a config.EmbeddedAuth, o *server.Options) ([]nats.Option, error) {
	switch {
	case a.User != "":
		pw, err := readSecret("bus.embedded.auth.password", a.PasswordFile, a.PasswordEnv)
		if err != nil {
			return nil, err
		}
		o.Users = []*server.User{{Username: a.User, Password: pw}}
		return []nats.Option{nats.UserInfo(a.User, pw)}, nil
	case a.TokenFile != "":
		tok, err := readSecret("bus.embedded.auth.token_file", a.TokenFile, "")
		if err != nil {
			return nil, err
		}
		o.Authorization = tok
		return []nats.Option{nats.Token(tok)}, nil
	case len(a.Nkeys) > 0:
		for _, k := range a.Nkeys {
			o.Nkeys = append(o.Nkeys, &server.NkeyUser{Nkey: k})
		}
		var b [24]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("in-process password: %w", err)
		}
		pw := hex.EncodeToString(b[:])
		o.Users = []*server.User{{Username: "herald-in-process", Password: pw}}
		return []nats.Option{nats.UserInfo("herald-in-process", pw)}, nil
	}
	return nil, nil
}

// clientOptions returns the options that authenticate and secure herald's
// connection to NATS at cfg.URLs. bus's own credentials win; without them a
// connection to this config's embedded server (local) borrows the embedded
// server's user or token, and verifies it with its CA.
func clientOptions(cfg config.Bus, local bool) ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case cfg.Credentials != "":
		if _, err := os.Stat(cfg.Credentials); err != nil {
			return nil, fmt.Errorf("bus.credentials %s: %w", cfg.Credentials, ErrSecret)
		}
		opts = append(opts, nats.UserCredentials(cfg.Credentials))
	case cfg.NkeySeedFile != "":
		o, err := nats.NkeyOptionFromSeed(cfg.NkeySeedFile)
		if err != nil {
			// nats.go's message names the file, never the seed.
			return nil, fmt.Errorf("bus.nkey_seed_file: %v: %w", err, ErrSecret)
		}
		opts = append(opts, o)
	case cfg.User != "":
		pw, err := readSecret("bus.password", cfg.PasswordFile, cfg.PasswordEnv)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserInfo(cfg.User, pw))
	case cfg.TokenFile != "":
		tok, err := readSecret("bus.token_file", cfg.TokenFile, "")
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Token(tok))
	case local && cfg.Embedded.Auth.User != "":
		a := cfg.Embedded.Auth
		pw, err := readSecret("bus.embedded.auth.password", a.PasswordFile, a.PasswordEnv)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserInfo(a.User, pw))
	case local && cfg.Embedded.Auth.TokenFile != "":
		tok, err := readSecret("bus.embedded.auth.token_file", cfg.Embedded.Auth.TokenFile, "")
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Token(tok))
	}
	t := cfg.TLS
	if local && t.CAFile == "" && !t.InsecureSkipVerify {
		t.CAFile = cfg.Embedded.TLS.CAFile
	}
	if t.CAFile != "" || t.CertFile != "" || t.InsecureSkipVerify || (local && cfg.Embedded.TLS.CertFile != "") {
		tc, err := clientTLS(t)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(tc))
	}
	return opts, nil
}

// clientTLS builds the TLS config: TLS 1.2 at least, the server verified
// against ca_file (or the system's roots) unless insecure_skip_verify.
func clientTLS(t config.ClientTLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.InsecureSkipVerify} // only when the config says so
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("bus.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("bus.tls.ca_file %s: no PEM certificate in it", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("bus.tls.cert_file/key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// isLocal reports whether urls is this config's embedded server's own
// listener: the way `herald ingest` and the other tools reach it.
func isLocal(cfg config.Bus) bool {
	if len(cfg.URLs) == 0 {
		return true
	}
	if cfg.Embedded.Listen == "" || len(cfg.URLs) != 1 {
		return false
	}
	u := cfg.URLs[0]
	for _, scheme := range []string{"nats://", "tls://"} {
		if u == scheme+cfg.Embedded.Listen {
			return true
		}
	}
	return false
}

// redactedURLs joins urls for messages, without their user information.
func redactedURLs(urls []string) string {
	out := make([]string, len(urls))
	for i, u := range urls {
		out[i] = config.RedactURL(u)
	}
	return strings.Join(out, ",")
}

// declareForwarding adds the consumer a hub sources this edge's raw stream
// through. It delivers only what the hub has stored (AckFlowControl): a
// record leaves the edge's work queue once it is safe on the hub.
func (b *Bus) declareForwarding(ctx context.Context) error {
	domain := b.cfg.Embedded.JetStreamDomain
	// A server that ran as a plain edge before has a classifier consumer
	// on the work queue, which would refuse a second one; its undelivered
	// records stay in the stream and are forwarded.
	if err := b.JS.DeleteConsumer(ctx, StreamRaw, ConsumerClassifier); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("remove consumer %s on %s before forwarding: %w", ConsumerClassifier, StreamRaw, err)
	}
	_, err := b.JS.CreateOrUpdateConsumer(ctx, StreamRaw, jetstream.ConsumerConfig{
		Durable:        ConsumerForward,
		DeliverSubject: forwardSubject(domain),
		AckPolicy:      jetstream.AckFlowControlPolicy,
		FlowControl:    true,
		IdleHeartbeat:  time.Second, // the server requires 1s for this ack policy
		MaxAckPending:  MaxAckPending * 16,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("declare consumer %s on %s: %w", ConsumerForward, StreamRaw, err)
	}
	return nil
}

// edgeSources are the sources of a hub's raw stream: the forwarding
// consumer of each edge domain.
func edgeSources(domains []string) []*jetstream.StreamSource {
	var out []*jetstream.StreamSource
	for _, d := range domains {
		out = append(out, &jetstream.StreamSource{
			Name:     StreamRaw,
			Domain:   d,
			Consumer: &jetstream.StreamConsumerSource{Name: ConsumerForward, DeliverSubject: forwardSubject(d)},
		})
	}
	return out
}

// Placement is where cfg puts herald's streams and key-value buckets in a
// supercluster (bus.placement), or nil to leave it to the server: the
// cluster of the server that received the request creating a stream.
func Placement(cfg config.Bus) *jetstream.Placement {
	if !cfg.Placement.Set() {
		return nil
	}
	return &jetstream.Placement{Cluster: cfg.Placement.Cluster, Tags: cfg.Placement.Tags}
}

// placementHint names bus.placement in an error the servers give when no
// servers fit it (JetStream answers the same while a cluster forms).
func placementHint(cfg config.Bus, err error) error {
	var api *jetstream.APIError
	if !cfg.Placement.Set() || !errors.As(err, &api) || api.ErrorCode != 10005 {
		return err
	}
	return fmt.Errorf("%w (check bus.placement: cluster %q, tags %v, with bus.replicas %d)", err, cfg.Placement.Cluster, cfg.Placement.Tags, cfg.Replicas)
}

// clusterFormTimeout bounds how long Declare waits for a JetStream cluster
// to elect its meta leader and see enough peers, when the caller's context
// sets no deadline. A new three-node cluster needs about five seconds.
const clusterFormTimeout = 60 * time.Second

// attemptTimeout bounds one request while the cluster forms. Short,
// because when several processes declare the same stream at once the
// server answers only one of the equal requests: the others learn that it
// exists when they ask again.
const attemptTimeout = time.Second

// whileClusterForms runs f until it succeeds, retrying while the error says
// the JetStream cluster is not ready yet (no meta leader, too few peers for
// the replicas, a request nobody answered). Other errors return at once.
// On a single embedded server f runs once.
func (b *Bus) whileClusterForms(ctx context.Context, f func(context.Context) error) error {
	clustered := len(b.cfg.URLs) > 0 || b.cfg.Embedded.Cluster.Name != ""
	if !clustered {
		return f(ctx)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, clusterFormTimeout)
		defer cancel()
	}
	start := time.Now()
	var answer error // the servers' last own answer: more telling than a timeout
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := f(actx)
		cancel()
		var api *jetstream.APIError
		if errors.As(err, &api) {
			answer = err
		}
		if err == nil || !clusterForming(err) || ctx.Err() != nil {
			if err != nil && ctx.Err() != nil && attempt > 1 {
				if answer != nil {
					err = answer
				}
				return fmt.Errorf("the JetStream cluster was not ready within %s: %w", time.Since(start).Round(time.Second), placementHint(b.cfg, err))
			}
			return placementHint(b.cfg, err)
		}
		if attempt == 1 {
			b.log.Info("waiting for the JetStream cluster", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// clusterForming reports errors a forming cluster gives for a while.
func clusterForming(err error) bool {
	var api *jetstream.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode {
		case 10008, // JetStream system temporarily unavailable
			10005, // no suitable peers for placement
			10023: // insufficient resources
			return true
		}
		return false
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrJetStreamNotEnabled)
}
