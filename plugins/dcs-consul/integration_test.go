//go:build integration

package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
	"github.com/custos-ha/custos/plugin/sdk/dcs/dcstest"
	"github.com/custos-ha/custos/plugin/sdk/sdktest"
	"github.com/custos-ha/custos/plugins/dcs-consul/consul"
	"github.com/custos-ha/custos/testkit/servers"
)

// Shared by every test of the package: one Consul agent, one plugin build.
var (
	agent    *servers.Consul
	startErr error
)

// minParallel is how many parallel tests run at once unless -parallel says
// otherwise. The tests mostly wait for sessions to run out (20 s at least),
// so all of them fit side by side: the whole run then lasts about as long as
// the longest test.
const minParallel = 64

func TestMain(m *testing.M) {
	flag.Parse()
	sdktest.RaiseParallel(minParallel)
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	defer plugin.Close()
	// A missing Consul fails every test with the message (not a skip).
	agent, startErr = servers.StartConsul(servers.ConsulConfig{})
	code := m.Run()
	if agent != nil {
		if code != 0 {
			fmt.Fprintf(os.Stderr, "consul log:\n%s\n", agent.Log())
		}
		agent.Stop()
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return code
}

// consulAgent returns the shared agent or fails the test with why it is
// not there.
func consulAgent(t *testing.T) *servers.Consul {
	t.Helper()
	if startErr != nil {
		t.Fatalf("starting Consul: %v", startErr)
	}
	return agent
}

// testTTL is the TTL of the tests here: the smallest Consul allows.
const testTTL = consul.MinTTL

func configJSON(t *testing.T) []byte {
	return []byte(fmt.Sprintf(`{"host": %q}`, consulAgent(t).Address))
}

func testLogger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "consul", Level: hclog.Warn, Output: os.Stderr})
}

// plugin is this plugin's binary, built once.
var plugin = sdktest.NewBuilder("dcs-consul")

func pluginPath(t *testing.T) string { return plugin.Path(t) }

func TestConformance(t *testing.T) {
	t.Parallel()
	dcstest.RunConformance(t, dcstest.Target{
		New:          func(*testing.T) dcs.Backend { return consul.New(testLogger()) },
		Config:       configJSON(t),
		Capabilities: consul.Capabilities(),
	})
}

func TestIdentity(t *testing.T) {
	t.Parallel()
	id, _ := dcstest.LaunchBinary(t, pluginPath(t))
	if id.Name != "consul" || !id.Serves(sdk.KindDCS) || id.Version == "" {
		t.Fatalf("identity %s", id)
	}
	want := map[string]string{
		dcs.CapMinTTL:            "20",
		dcs.CapExpiryDelay:       strconv.Itoa(int(consul.ExpiryDelay / time.Millisecond)),
		dcstest.CapMaxValueBytes: "524288",
	}
	for k, v := range want {
		if id.Capabilities[k] != v {
			t.Errorf("capability %s = %q, want %q", k, id.Capabilities[k], v)
		}
	}
}

func ctxT(t *testing.T) context.Context { return sdktest.Context(t, 10*time.Second) }

func uniqueNamespace(t *testing.T) string { return sdktest.Namespace(t) }

// rawClient is a plain consul/api client, as patronictl or an operator
// would use.
func rawClient(t *testing.T) *api.Client {
	t.Helper()
	transport := http.DefaultTransport.(*http.Transport).Clone()
	c, err := api.NewClient(&api.Config{
		Address: consulAgent(t).Address, Scheme: "http", Transport: transport, HttpClient: &http.Client{Transport: transport},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(transport.CloseIdleConnections)
	return c
}

func configure(t *testing.T, b dcs.Backend, ns, member string, ttl time.Duration, config []byte) {
	t.Helper()
	err := b.Configure(ctxT(t), dcs.ConfigureRequest{
		Scope: "pg", Namespace: ns, Member: member, TTL: ttl, RetryTimeout: 5 * time.Second, Config: config,
	})
	if err != nil {
		t.Fatalf("configuring %s: %v", member, err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
}

func newBackend(t *testing.T, ns, member string, ttl time.Duration) *consul.Backend {
	t.Helper()
	b := consul.New(testLogger())
	configure(t, b, ns, member, ttl, configJSON(t))
	return b
}

// rawKV returns the key's entry, or fails when absent.
func rawKV(t *testing.T, c *api.Client, key string) *api.KVPair {
	t.Helper()
	p, _, err := c.KV().Get(key, &api.QueryOptions{RequireConsistent: true})
	if err != nil {
		t.Fatalf("raw get %s: %v", key, err)
	}
	if p == nil {
		t.Fatalf("raw get %s: absent", key)
	}
	return p
}

func rawAbsent(t *testing.T, c *api.Client, key string) bool {
	t.Helper()
	p, _, err := c.KV().Get(key, &api.QueryOptions{RequireConsistent: true})
	if err != nil {
		t.Fatalf("raw get %s: %v", key, err)
	}
	return p == nil
}

func rawSession(t *testing.T, c *api.Client, id string) *api.SessionEntry {
	t.Helper()
	s, _, err := c.Session().Info(id, nil)
	if err != nil {
		t.Fatalf("session info %s: %v", id, err)
	}
	if s == nil {
		t.Fatalf("session %s not found", id)
	}
	return s
}

func index(t *testing.T, version string) uint64 {
	t.Helper()
	i, err := strconv.ParseUint(version, 10, 64)
	if err != nil {
		t.Fatalf("version %q is not a ModifyIndex: %v", version, err)
	}
	return i
}

// TestPatroniLayout checks what lands in Consul, key by key and session by
// session, against Patroni's Consul layout.
func TestPatroniLayout(t *testing.T) {
	t.Parallel()
	raw := rawClient(t)
	ns := uniqueNamespace(t)
	prefix := ns[1:] + "/pg/" // no leading slash
	a := newBackend(t, ns, "pg1", 30*time.Second)

	// Values are stored byte for byte: spacing, non-ASCII, even non-UTF-8.
	member := []byte("{\"conn_url\":\"postgres://10.0.0.1:5432/postgres\",\"api_url\":\"http://10.0.0.1:8008/patroni\"," +
		"\"state\":\"running\",\"role\":\"primary\",\"tags\":{\"zone\":\"zürich ✓\"},\"xlog_location\":25166136} \n\t\xff")
	if err := a.TouchMember(ctxT(t), member); err != nil {
		t.Fatal(err)
	}
	version, err := a.AcquireLeader(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}

	// leader: the plain member name, acquired by the same session as the
	// member key.
	leader := rawKV(t, raw, prefix+"leader")
	if string(leader.Value) != "pg1" {
		t.Fatalf("leader value %q, want the plain name pg1", leader.Value)
	}
	if leader.Session == "" || leader.ModifyIndex != index(t, version) {
		t.Fatalf("leader session %q ModifyIndex %d, AcquireLeader returned %s", leader.Session, leader.ModifyIndex, version)
	}
	m := rawKV(t, raw, prefix+"members/pg1")
	if !bytes.Equal(m.Value, member) {
		t.Fatalf("member value %q, want %q", m.Value, member)
	}
	if m.Session != leader.Session {
		t.Fatalf("member key held by session %s, leader key by %s: want one session per member", m.Session, leader.Session)
	}
	sess := rawSession(t, raw, leader.Session)
	if sess.Name != "pg-pg1" || sess.Behavior != api.SessionBehaviorDelete || sess.TTL != "15s" ||
		sess.LockDelay != time.Millisecond || len(sess.NodeChecks) != 0 || len(sess.ServiceChecks) != 0 {
		t.Fatalf("session %+v: want name pg-pg1, behavior delete, TTL 15s (ttl/2), lock delay 1ms, no checks", sess)
	}
	c, err := a.GetCluster(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if c.Leader == nil || c.Leader.Session != leader.Session || c.Leader.Version != version {
		t.Fatalf("leader reads %+v, session %s", c.Leader, leader.Session)
	}
	if m := c.Member("pg1"); m == nil || m.Session != c.Leader.Session || !bytes.Equal(m.Data, member) {
		t.Fatalf("member reads %+v", m)
	}

	// Renewal only renews the session: the leader key is not rewritten.
	for range 2 {
		if err := a.RenewLeader(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	if l := rawKV(t, raw, prefix+"leader"); l.ModifyIndex != leader.ModifyIndex || l.Session != leader.Session {
		t.Fatalf("after RenewLeader ModifyIndex %d session %s, want %d %s unchanged", l.ModifyIndex, l.Session, leader.ModifyIndex, leader.Session)
	}

	// CAS keys compare ModifyIndex.
	v1, err := a.CompareAndSet(ctxT(t), dcs.KeyConfig, []byte(`{"ttl": 30, "loop_wait": 10}`), "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := rawKV(t, raw, prefix+"config")
	if string(cfg.Value) != `{"ttl": 30, "loop_wait": 10}` || cfg.ModifyIndex != index(t, v1) || cfg.Session != "" {
		t.Fatalf("config %q ModifyIndex %d session %q, CAS returned %s", cfg.Value, cfg.ModifyIndex, cfg.Session, v1)
	}
	// patronictl edit-config writes behind our back.
	if _, err := raw.KV().Put(&api.KVPair{Key: prefix + "config", Value: []byte(`{"ttl":20}`)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CompareAndSet(ctxT(t), dcs.KeyConfig, []byte(`{}`), v1); !errors.Is(err, dcs.ErrVersionMismatch) {
		t.Fatalf("CAS over a foreign write: want ErrVersionMismatch, got %v", err)
	}
	foreign := rawKV(t, raw, prefix+"config")
	v2, err := a.CompareAndSet(ctxT(t), dcs.KeyConfig, []byte(`{"ttl":25}`), strconv.FormatUint(foreign.ModifyIndex, 10))
	if err != nil {
		t.Fatalf("CAS with the ModifyIndex of a foreign write: %v", err)
	}
	if got := rawKV(t, raw, prefix+"config"); got.ModifyIndex != index(t, v2) || string(got.Value) != `{"ttl":25}` {
		t.Fatalf("config %q ModifyIndex %d after CAS returning %s", got.Value, got.ModifyIndex, v2)
	}

	// Every other key, with the exact names.
	if _, err := a.CompareAndSet(ctxT(t), dcs.KeyInitialize, []byte("7268616322854375442"), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CompareAndSet(ctxT(t), dcs.KeyFailover, []byte(`{"leader":"pg1","member":"pg2"}`), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CompareAndSet(ctxT(t), dcs.KeySync, []byte(`{"leader":"pg1","quorum":0,"sync_standby":null}`), ""); err != nil {
		t.Fatal(err)
	}
	for key, v := range map[dcs.Key]string{
		dcs.KeyHistory:  `[[1,25165984,"no recovery target specified","2024-01-01T00:00:00+00:00","pg1"]]`,
		dcs.KeyStatus:   `{"optime":25166136,"slots":{"pg2":25166136}}`,
		dcs.KeyFailsafe: `{"pg1":"http://10.0.0.1:8008/patroni"}`,
	} {
		if err := a.Set(ctxT(t), key, []byte(v)); err != nil {
			t.Fatal(err)
		}
		if got := rawKV(t, raw, prefix+string(key)); string(got.Value) != v || got.Session != "" {
			t.Fatalf("%s stored %q session %q", key, got.Value, got.Session)
		}
	}
	keys, _, err := raw.KV().Keys(ns[1:]+"/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"config", "failover", "failsafe", "history", "initialize", "leader", "members/pg1", "status", "sync"}
	for i := range want {
		want[i] = prefix + want[i]
	}
	if !slices.Equal(keys, want) {
		t.Fatalf("keys under %s:\n%q\nwant\n%q", ns[1:], keys, want)
	}

	// A TTL change creates a session with the new TTL, and both keys move
	// onto it.
	if err := a.SetTTL(ctxT(t), 50*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := a.RenewLeader(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := a.TouchMember(ctxT(t), member); err != nil {
		t.Fatal(err)
	}
	moved := rawKV(t, raw, prefix+"leader")
	if string(moved.Value) != "pg1" || moved.Session == leader.Session || moved.ModifyIndex == leader.ModifyIndex {
		t.Fatalf("after SetTTL the leader is %q session %s (was %s) ModifyIndex %d (was %d)",
			moved.Value, moved.Session, leader.Session, moved.ModifyIndex, leader.ModifyIndex)
	}
	if m := rawKV(t, raw, prefix+"members/pg1"); m.Session != moved.Session || !bytes.Equal(m.Value, member) {
		t.Fatalf("member key held by session %s, leader key by %s", m.Session, moved.Session)
	}
	if s := rawSession(t, raw, moved.Session); s.TTL != "25s" || s.Name != "pg-pg1" {
		t.Fatalf("new session %+v, want TTL 25s", s)
	}
	// The old session is left to expire, not destroyed: a restarting agent
	// could still renew it.
	rawSession(t, raw, leader.Session)

	// Releasing deletes the leader key only.
	if err := a.DeleteLeader(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if !rawAbsent(t, raw, prefix+"leader") {
		t.Fatal("leader key still present after DeleteLeader")
	}
	if rawAbsent(t, raw, prefix+"members/pg1") {
		t.Fatal("DeleteLeader removed the member key")
	}
	if _, err := raw.KV().DeleteTree(ns[1:]+"/", nil); err != nil {
		t.Fatal(err)
	}
}

// TestSessionChecks ties the session to Consul checks when checks is set
// (Patroni's checks key); by default it depends on its TTL alone.
func TestSessionChecks(t *testing.T) {
	t.Parallel()
	raw := rawClient(t)
	ns := uniqueNamespace(t)
	b := consul.New(testLogger())
	configure(t, b, ns, "pg1", testTTL, []byte(fmt.Sprintf(`{"host": %q, "checks": ["serfHealth"]}`, consulAgent(t).Address)))
	if err := b.TouchMember(ctxT(t), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	m := rawKV(t, raw, ns[1:]+"/pg/members/pg1")
	if s := rawSession(t, raw, m.Session); !slices.Equal(s.NodeChecks, []string{"serfHealth"}) {
		t.Fatalf("session node checks %q, want [serfHealth]", s.NodeChecks)
	}
	if _, err := raw.KV().DeleteTree(ns[1:]+"/", nil); err != nil {
		t.Fatal(err)
	}
}

// TestSessionLost checks that a session Consul no longer knows (expired
// while the agent was stuck, or destroyed by an operator) is replaced by a
// new one, and that its keys went with it (behavior=delete).
func TestSessionLost(t *testing.T) {
	t.Parallel()
	raw := rawClient(t)
	ns := uniqueNamespace(t)
	prefix := ns[1:] + "/pg/"
	b := newBackend(t, ns, "pg1", testTTL)
	if _, err := b.AcquireLeader(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := b.TouchMember(ctxT(t), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	session := rawKV(t, raw, prefix+"leader").Session
	if _, err := raw.Session().Destroy(session, nil); err != nil {
		t.Fatal(err)
	}
	if !rawAbsent(t, raw, prefix+"leader") || !rawAbsent(t, raw, prefix+"members/pg1") {
		t.Fatal("keys of a destroyed session are still there (want behavior=delete)")
	}
	if err := b.TouchMember(ctxT(t), []byte(`{"back":true}`)); err != nil {
		t.Fatalf("TouchMember after the session was lost: %v", err)
	}
	if err := b.RenewLeader(ctxT(t)); err != nil {
		t.Fatalf("RenewLeader after the session was lost: %v", err)
	}
	l, m := rawKV(t, raw, prefix+"leader"), rawKV(t, raw, prefix+"members/pg1")
	if string(l.Value) != "pg1" || l.Session == session || l.Session != m.Session {
		t.Fatalf("leader %q held by %s, member by %s, lost session %s", l.Value, l.Session, m.Session, session)
	}
	// The same for writes not preceded by a renewal.
	if _, err := raw.Session().Destroy(l.Session, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.AcquireLeader(ctxT(t)); err != nil {
		t.Fatalf("AcquireLeader after the session was lost: %v", err)
	}
	if err := b.TakeLeader(ctxT(t)); err != nil {
		t.Fatalf("TakeLeader: %v", err)
	}
}

// TestReadsPatroniCluster reads a cluster as Patroni writes it, and takes
// over a leader key that a Patroni process of the same member holds.
func TestReadsPatroniCluster(t *testing.T) {
	t.Parallel()
	raw := rawClient(t)
	ns := uniqueNamespace(t)
	prefix := ns[1:] + "/pg/"
	patroni, _, err := raw.Session().CreateNoChecks(&api.SessionEntry{
		Name: "pg-pg1", TTL: "15s", Behavior: api.SessionBehaviorDelete, LockDelay: time.Millisecond,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = raw.Session().Destroy(patroni, nil) })
	for _, kv := range []struct {
		key, value string
		session    string
	}{
		{"leader", "pg1", patroni},
		{"members/pg1", `{"role":"primary"}`, patroni},
		{"members/pg2", `{"role":"replica"}`, ""},
		{"members/pg2/extra", `ignored`, ""},
		{"optime/leader", "25166136", ""},
		{"initialize", "7268616322854375442", ""},
	} {
		p := &api.KVPair{Key: prefix + kv.key, Value: []byte(kv.value), Session: kv.session}
		if kv.session != "" {
			if ok, _, err := raw.KV().Acquire(p, nil); err != nil || !ok {
				t.Fatalf("acquiring %s: %v %v", kv.key, ok, err)
			}
		} else if _, err := raw.KV().Put(p, nil); err != nil {
			t.Fatal(err)
		}
	}
	b := newBackend(t, ns, "pg1", testTTL)
	c, err := b.GetCluster(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if c.Leader == nil || c.Leader.Name != "pg1" || c.Leader.Session != patroni {
		t.Fatalf("leader %+v", c.Leader)
	}
	if len(c.Members) != 2 || c.Member("pg2") == nil || string(c.Member("pg2").Data) != `{"role":"replica"}` || c.Member("pg2").Session != "" {
		t.Fatalf("members %+v", c.Members)
	}
	if c.Initialize == nil || string(c.Initialize.Data) != "7268616322854375442" {
		t.Fatalf("initialize %+v", c.Initialize)
	}
	before := rawKV(t, raw, prefix+"leader")
	if err := b.RenewLeader(ctxT(t)); err != nil {
		t.Fatalf("renewing a leader key of my name held by a foreign session: %v", err)
	}
	after := rawKV(t, raw, prefix+"leader")
	if string(after.Value) != "pg1" || after.Session == patroni || after.ModifyIndex == before.ModifyIndex {
		t.Fatalf("leader %q session %s ModifyIndex %d->%d: want it moved onto custos's session", after.Value, after.Session, before.ModifyIndex, after.ModifyIndex)
	}
	// The member key moves too, the first time custos writes it.
	if err := b.TouchMember(ctxT(t), []byte(`{"role":"primary","custos":true}`)); err != nil {
		t.Fatal(err)
	}
	if m := rawKV(t, raw, prefix+"members/pg1"); m.Session != after.Session || string(m.Value) != `{"role":"primary","custos":true}` {
		t.Fatalf("member key %q held by %s, want custos's session %s", m.Value, m.Session, after.Session)
	}
	// The other member cannot renew or delete it.
	other := newBackend(t, ns, "pg2", testTTL)
	if err := other.RenewLeader(ctxT(t)); !errors.Is(err, dcs.ErrVersionMismatch) {
		t.Fatalf("pg2 renewing pg1's key: want ErrVersionMismatch, got %v", err)
	}
	if err := other.DeleteLeader(ctxT(t)); !errors.Is(err, dcs.ErrVersionMismatch) {
		t.Fatalf("pg2 deleting pg1's key: want ErrVersionMismatch, got %v", err)
	}
	if _, err := raw.KV().DeleteTree(ns[1:]+"/", nil); err != nil {
		t.Fatal(err)
	}
}

// TestBinary runs the conformance kit and the crash tests through the
// built plugin binary. Beyond the kit's checks: the restarted process's
// renewals keep the key on its session without rewriting it, and the killed
// process's session is gone once its keys are.
func TestBinary(t *testing.T) {
	t.Parallel()
	raw := rawClient(t)
	var killed *api.KVPair
	var renewedIndex uint64
	leader := func(t *testing.T, p dcstest.Place) *api.KVPair {
		return rawKV(t, raw, p.Namespace[1:]+"/"+p.Scope+"/leader")
	}
	dcstest.RunBinary(t, dcstest.Binary{
		Path:   pluginPath(t),
		Config: configJSON(t),
		Restart: dcstest.RestartChecks{
			Killed:  func(t *testing.T, p dcstest.Place) { killed = leader(t, p) },
			Renewed: func(t *testing.T, p dcstest.Place) { renewedIndex = leader(t, p).ModifyIndex },
			Expired: func(t *testing.T, p dcstest.Place) {
				if l := leader(t, p); l.ModifyIndex != renewedIndex {
					t.Fatalf("renewals with the same session rewrote the key: ModifyIndex %d -> %d", renewedIndex, l.ModifyIndex)
				}
				if s, _, err := raw.Session().Info(killed.Session, nil); err != nil || s != nil {
					t.Fatalf("the killed process's session %s still there (%v) after its TTL", killed.Session, err)
				}
			},
		},
	})
}

// recorder runs Watch in the background and records the events.
type recorder struct {
	mu     sync.Mutex
	events []dcs.Event
}

func (r *recorder) add(e dcs.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) snapshot() []dcs.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func watch(t *testing.T, b dcs.Backend) *recorder {
	t.Helper()
	r := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Watch(ctx, r.add) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch after cancel: %v", err)
		}
	})
	return r
}

// TestWatchSeesForeignChanges checks event paths, types and versions for
// writes made by other clients, including a session destroyed.
func TestWatchSeesForeignChanges(t *testing.T) {
	t.Parallel()
	raw := rawClient(t)
	ns := uniqueNamespace(t)
	prefix := ns[1:] + "/pg/"
	b := newBackend(t, ns, "w", testTTL)
	r := watch(t, b)
	// The watch starts with a listing; write until the first event shows.
	// Each write carries a new value: Consul does not count rewriting the
	// same bytes as a change (same ModifyIndex, no watcher woken).
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; len(r.snapshot()) == 0; i++ {
		status := fmt.Sprintf(`{"optime":%d}`, i)
		if _, err := raw.KV().Put(&api.KVPair{Key: prefix + "status", Value: []byte(status)}, nil); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("no event for a write")
		}
		time.Sleep(50 * time.Millisecond) // give the watch time to start
	}
	session, _, err := raw.Session().CreateNoChecks(&api.SessionEntry{TTL: "60s", Behavior: api.SessionBehaviorDelete, LockDelay: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The watch diffs listings, so changes made between two of them fold
	// into one (a key put and deleted in between is never seen): each write
	// waits for its event before the next is made.
	var want []dcs.Event
	if ok, _, err := raw.KV().Acquire(&api.KVPair{Key: prefix + "leader", Value: []byte("pg9"), Session: session}, nil); err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	leader := rawKV(t, raw, prefix+"leader")
	want = append(want, dcs.Event{Type: dcs.EventPut, Path: "leader", Version: strconv.FormatUint(leader.ModifyIndex, 10)})
	waitEvents(t, r, want, 0)
	if _, err := raw.KV().Put(&api.KVPair{Key: prefix + "members/pg9/deep", Value: []byte("x")}, nil); err != nil {
		t.Fatal(err)
	}
	deep := rawKV(t, raw, prefix+"members/pg9/deep")
	want = append(want, dcs.Event{Type: dcs.EventPut, Path: "members/pg9/deep", Version: strconv.FormatUint(deep.ModifyIndex, 10)})
	waitEvents(t, r, want, 0)
	if _, err := raw.Session().Destroy(session, nil); err != nil {
		t.Fatal(err)
	}
	want = append(want, dcs.Event{Type: dcs.EventDelete, Path: "leader"})
	waitEvents(t, r, want, deep.ModifyIndex)
}

// waitEvents waits until the events r recorded, other than those for the
// status key the test wrote first, are want. A delete's version is the
// index its listing was read at: it must be past after, then it is left
// out of the comparison.
func waitEvents(t *testing.T, r *recorder, want []dcs.Event, after uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var got []dcs.Event
		for _, e := range r.snapshot() {
			if e.Path == "status" {
				continue
			}
			if e.Type == dcs.EventDelete {
				if index(t, e.Version) <= after {
					t.Fatalf("delete event version %s not past the last write %d", e.Version, after)
				}
				e.Version = ""
			}
			got = append(got, e)
		}
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("events %+v, want %+v", got, want)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

// TestServiceRegistration registers members as Patroni does, against the
// real agent, with a stand-in REST API for the HTTP check.
func TestServiceRegistration(t *testing.T) {
	t.Parallel()
	raw := rawClient(t)
	var (
		mu   sync.Mutex
		hits []string
	)
	restapi := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits = append(hits, r.URL.Path)
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(restapi.Close)

	ns := uniqueNamespace(t)
	scope := "Batman_" + ns[1:] // upper case and '_' become a DNS name
	service := consul.ServiceName(scope)
	if want := "batman-" + ns[1:]; service != want {
		t.Fatalf("service name %q, want %q", service, want)
	}
	b := consul.New(testLogger())
	err := b.Configure(ctxT(t), dcs.ConfigureRequest{
		Scope: scope, Namespace: ns, Member: "pg1", TTL: 30 * time.Second, RetryTimeout: 5 * time.Second,
		Config: []byte(fmt.Sprintf(`{"host": %q, "register_service": true, "service_tags": ["zeta", "alpha"], "service_check_interval": "1s"}`,
			consulAgent(t).Address)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	id := scope + "/pg1"
	t.Cleanup(func() { _ = raw.Agent().ServiceDeregister(id) })

	member := func(role, state string) []byte {
		return []byte(fmt.Sprintf(`{"conn_url":"postgres://10.1.2.3:5433/postgres","api_url":%q,"state":%q,"role":%q,"version":"4.1.4"}`,
			restapi.URL+"/patroni", state, role))
	}
	// Not running yet: nothing registered.
	if err := b.TouchMember(ctxT(t), member("replica", "starting")); err != nil {
		t.Fatal(err)
	}
	if svc, _, err := raw.Agent().Service(id, nil); err == nil && svc != nil {
		t.Fatalf("service registered for a member that is not running: %+v", svc)
	}

	if err := b.TouchMember(ctxT(t), member("primary", "running")); err != nil {
		t.Fatal(err)
	}
	svc, _, err := raw.Agent().Service(id, nil)
	if err != nil {
		t.Fatalf("service %s: %v", id, err)
	}
	if svc.Service != service || svc.Address != "10.1.2.3" || svc.Port != 5433 || !svc.EnableTagOverride ||
		!slices.Equal(svc.Tags, []string{"alpha", "zeta", "primary", "master"}) {
		t.Fatalf("service %+v", svc)
	}
	// Consul runs the check against <api_url host>/primary every second,
	// and it passes.
	deadline := time.Now().Add(10 * time.Second)
	for {
		entries, _, err := raw.Health().Service(service, "primary", true, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) == 1 && entries[0].Service.ID == id && len(entries[0].Checks) == 2 {
			// The node's serfHealth and the service's HTTP check.
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no passing primary instance of %s: %+v", service, entries)
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
	checks, _, err := raw.Health().Checks(service, nil)
	if err != nil || len(checks) != 1 {
		t.Fatalf("checks of %s: %+v %v", service, checks, err)
	}
	if c := checks[0]; c.ServiceID != id || c.Type != "http" || !strings.Contains(c.Output, "HTTP GET "+restapi.URL+"/primary: 200 OK") {
		t.Fatalf("check %+v: want an HTTP check of GET %s/primary", c, restapi.URL)
	}
	// Consul does not show a check's interval or deregistration timeout;
	// count the requests instead (the unit tests check the definition).
	mu.Lock()
	first := len(hits)
	mu.Unlock()
	time.Sleep(2500 * time.Millisecond) // two or three check intervals
	mu.Lock()
	if n := len(hits) - first; n < 2 || n > 4 {
		t.Errorf("the REST API saw %d checks in 2.5 s, want 2 or 3 (interval 1s)", n)
	}
	mu.Unlock()
	mu.Lock()
	if !slices.Contains(hits, "/primary") {
		t.Errorf("the REST API saw %v, want GET /primary", hits)
	}
	mu.Unlock()

	// A role change re-registers.
	if err := b.TouchMember(ctxT(t), member("standby_leader", "running")); err != nil {
		t.Fatal(err)
	}
	svc, _, err = raw.Agent().Service(id, nil)
	if err != nil || !slices.Equal(svc.Tags, []string{"alpha", "zeta", "standby-leader"}) {
		t.Fatalf("after a role change: %+v %v", svc, err)
	}

	// Stopping deregisters.
	if err := b.TouchMember(ctxT(t), member("replica", "stopped")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := raw.Agent().Service(id, nil); err == nil {
		t.Fatal("service still registered after the member stopped")
	}
}
