package bus_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/bus/bustest"
	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/internal/testnet"
)

// freePort returns a TCP port on 127.0.0.1 nothing listens on, never the
// same twice in this process (the cluster tests need ports before the
// servers exist, to list them in each other's routes).
func freePort(t testing.TB) int { t.Helper(); return testnet.FreePort(t) }

func addr(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// busConfig is a small embedded configuration in t.TempDir() with a client
// listener on a free port.
func busConfig(t testing.TB) config.Bus {
	t.Helper()
	cfg := config.Default().Bus
	cfg.Embedded.Listen = addr(freePort(t))
	cfg.Embedded.DataDir = t.TempDir()
	cfg.AckWait = config.Duration(2 * time.Second)
	return cfg
}

func openBus(t testing.TB, cfg config.Bus) *bus.Bus {
	t.Helper()
	b, err := bus.Open(t.Context(), cfg, bustest.Logger(t))
	if err != nil {
		t.Fatalf("open bus %s: %v", cfg.Embedded.ServerName, err)
	}
	t.Cleanup(b.Close)
	return b
}

// declare retries Declare until it succeeds: a new cluster has no
// JetStream meta leader for about five seconds.
func declare(t testing.TB, b *bus.Bus, within time.Duration) {
	t.Helper()
	bustest.Eventually(t, within, 250*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		return b.Declare(ctx, []string{"log"})
	})
}

// publish stores payloads on subject through js, retrying each while the
// cluster elects a new leader.
func publish(t testing.TB, js jetstream.JetStream, subject string, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		bustest.Eventually(t, 15*time.Second, 100*time.Millisecond, func() error {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			_, err := js.Publish(ctx, subject, []byte(fmt.Sprint(i)), jetstream.WithMsgID(fmt.Sprint("m", i)))
			return err
		})
	}
}

// drain takes every message from the classifier's consumer through b and
// returns the payloads seen, waiting until want distinct ones arrived.
func drain(t testing.TB, b *bus.Bus, want int, seen map[string]bool) {
	t.Helper()
	bustest.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		cons, err := b.JS.Consumer(ctx, bus.StreamRaw, bus.ConsumerClassifier)
		if err != nil {
			return err
		}
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			return err
		}
		for m := range batch.Messages() {
			seen[string(m.Data())] = true
			if err := m.DoubleAck(ctx); err != nil {
				return err
			}
		}
		if len(seen) < want {
			return fmt.Errorf("%d of %d messages consumed", len(seen), want)
		}
		return nil
	})
}

func TestAThreeNodeClusterOfEmbeddedServersKeepsR3StreamsWorkingWhenANodeStops(t *testing.T) {
	ports := []int{freePort(t), freePort(t), freePort(t)}
	var routes []string
	for _, p := range ports {
		routes = append(routes, "nats-route://"+addr(p))
	}
	nodes := map[string]*bus.Bus{}
	var names []string
	for i, p := range ports {
		cfg := busConfig(t)
		cfg.Replicas = 3
		cfg.Embedded.ServerName = fmt.Sprintf("herald-%d", i+1)
		cfg.Embedded.Cluster = config.Cluster{Name: "herald", Listen: addr(p), Routes: routes}
		nodes[cfg.Embedded.ServerName] = openBus(t, cfg)
		names = append(names, cfg.Embedded.ServerName)
	}
	// Declare itself waits for the meta leader (about five seconds).
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := nodes["herald-1"].Declare(ctx, []string{"log"}); err != nil {
		t.Fatalf("declare on a new cluster: %v", err)
	}
	t.Logf("streams declared with 3 replicas %s after the nodes started", time.Since(start).Round(time.Millisecond))

	info, err := nodes["herald-1"].JS.Stream(t.Context(), bus.StreamRaw)
	if err != nil {
		t.Fatal(err)
	}
	ci := info.CachedInfo()
	if ci.Config.Replicas != 3 || ci.Cluster == nil || len(ci.Cluster.Replicas) != 2 {
		t.Fatalf("HERALD_RAW: replicas %d, cluster %+v; want 3 (a leader and 2 replicas)", ci.Config.Replicas, ci.Cluster)
	}
	leader := ci.Cluster.Leader
	var survivor *bus.Bus
	for _, n := range names {
		if n != leader {
			survivor = nodes[n]
			break
		}
	}
	publish(t, survivor.JS, bus.RawSubject("syslog"), 0, 100)
	seen := map[string]bool{}
	drain(t, survivor, 50, seen)

	// Stop the stream's leader: the other two elect a new one and go on.
	nodes[leader].Close()
	publish(t, survivor.JS, bus.RawSubject("syslog"), 100, 200)
	drain(t, survivor, 200, seen)
	for i := range 200 {
		if !seen[fmt.Sprint(i)] {
			t.Errorf("message %d was not consumed", i)
		}
	}
	info, err = survivor.JS.Stream(t.Context(), bus.StreamRaw)
	if err != nil {
		t.Fatal(err)
	}
	if l := info.CachedInfo().Cluster.Leader; l == leader || l == "" {
		t.Errorf("leader after stopping %s: %q", leader, l)
	}
}

func TestTwoClustersJoinedByGatewaysShareOneJetStream(t *testing.T) {
	east, west := freePort(t), freePort(t)
	mk := func(name string, gw int, other string, otherGW int) *bus.Bus {
		cfg := busConfig(t)
		cfg.Embedded.ServerName = name + "-1"
		// A one-node cluster lists its own route: JetStream refuses a
		// cluster without routes.
		route := addr(freePort(t))
		cfg.Embedded.Cluster = config.Cluster{Name: name, Listen: route, Routes: []string{"nats-route://" + route}}
		cfg.Embedded.Gateway = config.Gateway{Name: name, Listen: addr(gw), Gateways: []config.RemoteGateway{
			{Name: other, URLs: []string{"nats://" + addr(otherGW)}},
		}}
		return openBus(t, cfg)
	}
	e := mk("east", east, "west", west)
	w := mk("west", west, "east", east)
	sub, err := w.NC.SubscribeSync("herald.gateway.test")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	// Interest crosses the gateway once it is up; publish until it does.
	bustest.Eventually(t, 15*time.Second, 100*time.Millisecond, func() error {
		if err := e.NC.Publish("herald.gateway.test", []byte("from east")); err != nil {
			return err
		}
		m, err := sub.NextMsg(100 * time.Millisecond)
		if err != nil {
			return fmt.Errorf("nothing reached west: %w", err)
		}
		if string(m.Data) != "from east" {
			return fmt.Errorf("west got %q", m.Data)
		}
		return nil
	})

	// herald in east declares the streams (they live in east, where the
	// request came in); herald in west declares the same and consumes
	// what east stored: events entering east reach stages running west.
	declare(t, e, 20*time.Second)
	declare(t, w, 20*time.Second)
	publish(t, e.JS, bus.RawSubject("syslog"), 0, 20)
	seen := map[string]bool{}
	drain(t, w, 20, seen)
	info, err := w.JS.Stream(t.Context(), bus.StreamRaw)
	if err != nil {
		t.Fatal(err)
	}
	if c := info.CachedInfo().Cluster; c == nil || c.Name != "east" {
		t.Errorf("HERALD_RAW is placed in %+v, want cluster east", c)
	}
}

func TestALeafnodeEdgePassesMessagesToItsHub(t *testing.T) {
	leaf := freePort(t)
	hubCfg := busConfig(t)
	hubCfg.Embedded.ServerName = "hub"
	hubCfg.Embedded.Leafnode.Listen = addr(leaf)
	hub := openBus(t, hubCfg)
	edgeCfg := busConfig(t)
	edgeCfg.Embedded.ServerName = "edge"
	edgeCfg.Embedded.Listen = "" // a branch machine need not listen at all
	edgeCfg.Embedded.Leafnode.Remotes = []config.LeafRemote{{URLs: []string{"nats-leaf://" + addr(leaf)}}}
	edge := openBus(t, edgeCfg)
	sub, err := hub.NC.SubscribeSync("app.hello")
	if err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 15*time.Second, 100*time.Millisecond, func() error {
		if err := edge.NC.Publish("app.hello", []byte("from the edge")); err != nil {
			return err
		}
		if _, err := sub.NextMsg(100 * time.Millisecond); err != nil {
			return fmt.Errorf("nothing reached the hub: %w", err)
		}
		return nil
	})
}

func TestAForwardingEdgeStoresWhileItsHubIsDownAndForwardsWhenItReturns(t *testing.T) {
	leaf := freePort(t)
	hubCfg := busConfig(t)
	hubCfg.Embedded.ServerName = "hub"
	hubCfg.Embedded.JetStreamDomain = "hub"
	hubCfg.Embedded.Leafnode.Listen = addr(leaf)
	hubCfg.EdgeDomains = []string{"branch1"}
	edgeCfg := busConfig(t)
	edgeCfg.Embedded.ServerName = "branch1"
	edgeCfg.Embedded.JetStreamDomain = "branch1"
	edgeCfg.Embedded.Leafnode.Remotes = []config.LeafRemote{{URLs: []string{"nats-leaf://" + addr(leaf)}}}
	edgeCfg.Embedded.Leafnode.Forward = true

	// The hub is down: the edge stores on its own.
	edge := openBus(t, edgeCfg)
	declare(t, edge, 10*time.Second)
	publish(t, edge.JS, bus.RawSubject("syslog"), 0, 100)
	if _, err := edge.JS.Consumer(t.Context(), bus.StreamRaw, bus.ConsumerClassifier); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Errorf("a forwarding edge has a classifier consumer on its raw stream (err %v)", err)
	}

	// The hub comes up: it takes every record over, and the edge's work
	// queue empties as the hub stores them.
	start := time.Now()
	hub, err := bus.Open(t.Context(), hubCfg, bustest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	declare(t, hub, 10*time.Second)
	waitForward := func(want uint64) {
		t.Helper()
		bustest.Eventually(t, 25*time.Second, 100*time.Millisecond, func() error {
			hs, err := hub.JS.Stream(t.Context(), bus.StreamRaw)
			if err != nil {
				return err
			}
			es, err := edge.JS.Stream(t.Context(), bus.StreamRaw)
			if err != nil {
				return err
			}
			h, e := hs.CachedInfo().State.Msgs, es.CachedInfo().State.Msgs
			if h != want || e != 0 {
				return fmt.Errorf("hub holds %d of %d records, the edge still %d", h, want, e)
			}
			return nil
		})
	}
	waitForward(100)
	t.Logf("100 records forwarded %s after the hub started", time.Since(start).Round(time.Millisecond))

	// The hub's classifier sees them as if its own receivers stored them.
	seen := map[string]bool{}
	drain(t, hub, 100, seen)
	hub.Close()
}

func TestTheEmbeddedServerRefusesClientsWithoutItsCredentials(t *testing.T) {
	dir := t.TempDir()
	const password, token = "pa55-not-printed", "t0ken-not-printed"
	writeFile(t, dir+"/password", password+"\n")
	writeFile(t, dir+"/token", token+"\n")
	writeFile(t, dir+"/wrong", "wrong\n")
	for _, tc := range []struct {
		name  string
		auth  config.EmbeddedAuth
		wrong func(*config.Bus)
	}{
		{"a user with a password from a file", config.EmbeddedAuth{User: "herald", PasswordFile: dir + "/password"},
			func(b *config.Bus) { b.User, b.PasswordFile = "herald", dir+"/wrong" }},
		{"a user with a password from the environment", config.EmbeddedAuth{User: "herald", PasswordEnv: "HERALD_TEST_NATS_PASSWORD"},
			func(b *config.Bus) { b.User, b.PasswordEnv = "herald", "HERALD_TEST_NATS_WRONG" }},
		{"a token from a file", config.EmbeddedAuth{TokenFile: dir + "/token"},
			func(b *config.Bus) { b.TokenFile = dir + "/wrong" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("HERALD_TEST_NATS_PASSWORD", password)
			t.Setenv("HERALD_TEST_NATS_WRONG", "wrong")
			cfg := busConfig(t)
			cfg.Embedded.Auth = tc.auth
			b := openBus(t, cfg) // herald itself passes its own auth
			declare(t, b, 10*time.Second)

			if nc, err := nats.Connect("nats://"+cfg.Embedded.Listen, nats.Timeout(2*time.Second)); err == nil {
				nc.Close()
				t.Fatal("a client without credentials was accepted")
			} else if !errors.Is(err, nats.ErrAuthorization) {
				t.Fatalf("a client without credentials: %v, want an authorization violation", err)
			}

			// herald's tools borrow the embedded server's credentials.
			nc, js, err := bus.Connect(cfg, "herald-test")
			if err != nil {
				t.Fatalf("herald's tools with the config's credentials: %v", err)
			}
			defer nc.Close()
			if _, err := js.Stream(t.Context(), bus.StreamRaw); err != nil {
				t.Fatal(err)
			}

			wrong := cfg
			tc.wrong(&wrong)
			_, _, err = bus.Connect(wrong, "herald-test")
			if !errors.Is(err, nats.ErrAuthorization) {
				t.Fatalf("wrong credentials: %v, want an authorization violation", err)
			}
			for _, secret := range []string{password, token} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the error shows a secret: %v", err)
				}
			}
		})
	}
}

func TestHeraldsToolsReportAMissingSecretWithoutShowingAny(t *testing.T) {
	cfg := busConfig(t)
	cfg.URLs = []string{"nats://" + cfg.Embedded.Listen}
	cfg.User, cfg.PasswordFile = "herald", t.TempDir()+"/absent"
	_, _, err := bus.Connect(cfg, "herald-test")
	if !errors.Is(err, bus.ErrSecret) {
		t.Fatalf("err = %v, want bus.ErrSecret", err)
	}
	cfg.PasswordFile, cfg.PasswordEnv = "", "HERALD_TEST_UNSET_VARIABLE"
	_, _, err = bus.Connect(cfg, "herald-test")
	if !errors.Is(err, bus.ErrSecret) {
		t.Fatalf("err = %v, want bus.ErrSecret", err)
	}
}

func TestTheEmbeddedServerAcceptsNkeyUsersAndHeraldsToolsSignWithTheSeed(t *testing.T) {
	dir := t.TempDir()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	public, _ := kp.PublicKey()
	writeFile(t, dir+"/user.nk", string(seed)+"\n")
	cfg := busConfig(t)
	cfg.Embedded.Auth.Nkeys = []string{public}
	b := openBus(t, cfg)
	declare(t, b, 10*time.Second)
	if _, _, err := bus.Connect(cfg, "herald-test"); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("without the seed: %v, want an authorization violation", err)
	}
	cfg.NkeySeedFile = dir + "/user.nk"
	nc, _, err := bus.Connect(cfg, "herald-test")
	if err != nil {
		t.Fatalf("with the seed: %v", err)
	}
	nc.Close()
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestAServerThatCannotRunFailsAtOnceWithItsReason(t *testing.T) {
	// config refuses this (a cluster without routes); the bus must still
	// not hang for its 30 s start timeout if it gets one.
	cfg := busConfig(t)
	cfg.Embedded.ServerName = "lonely"
	cfg.Embedded.Cluster = config.Cluster{Name: "herald", Listen: addr(freePort(t))}
	start := time.Now()
	b, err := bus.Open(t.Context(), cfg, bustest.Logger(t))
	if err == nil {
		b.Close()
		t.Fatal("a JetStream cluster without routes started")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("failing took %s: %v", d, err)
	}
}

func TestBusPlacementPutsTheStreamsOnTheTaggedServersOfTheNamedClusterWhoeverDeclaresThem(t *testing.T) {
	east, west := freePort(t), freePort(t)
	placement := config.Placement{Cluster: "west", Tags: []string{"ssd"}}
	mk := func(name string, gw int, other string, otherGW int, tags ...string) *bus.Bus {
		cfg := busConfig(t)
		cfg.Embedded.ServerName = name + "-1"
		cfg.Embedded.Tags = tags
		route := addr(freePort(t))
		cfg.Embedded.Cluster = config.Cluster{Name: name, Listen: route, Routes: []string{"nats-route://" + route}}
		cfg.Embedded.Gateway = config.Gateway{Name: name, Listen: addr(gw), Gateways: []config.RemoteGateway{
			{Name: other, URLs: []string{"nats://" + addr(otherGW)}},
		}}
		cfg.Placement = placement
		return openBus(t, cfg)
	}
	e := mk("east", east, "west", west, "ssd")
	mk("west", west, "east", east, "SSD", "az:2") // a server's tags are compared lower-cased

	// Only east declares: without placement the streams would live in
	// east, where the requests come in.
	declare(t, e, 30*time.Second)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for _, name := range []string{bus.StreamRaw, bus.StreamTargets, bus.StreamDLQ} {
		info, err := e.JS.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		ci := info.CachedInfo()
		if ci.Cluster == nil || ci.Cluster.Name != "west" || ci.Cluster.Leader != "west-1" {
			t.Errorf("%s is placed in %+v, want cluster west, leader west-1", name, ci.Cluster)
		}
	}

	// A placement no server fits fails naming bus.placement, rather than
	// as a cluster that never formed. (The archive is a stream nobody
	// declared yet: declaring an existing one elsewhere would move it.)
	cfg := config.Default().Bus
	cfg.URLs = []string{e.ClientURL()}
	cfg.Placement = config.Placement{Cluster: "west", Tags: []string{"hdd"}}
	other, err := bus.Open(t.Context(), cfg, bustest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	ctx, cancel = context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	err = other.DeclareArchive(ctx, config.Archive{MaxAge: config.Duration(time.Hour)})
	if err == nil || !strings.Contains(err.Error(), "bus.placement") {
		t.Fatalf("declare with a placement no server fits: %v; want an error naming bus.placement", err)
	}
	t.Logf("as expected: %v", err)
}
