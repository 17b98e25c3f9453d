//go:build integration

package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
	"github.com/custos-ha/custos/plugin/sdk/dcs/dcstest"
	"github.com/custos-ha/custos/plugin/sdk/sdktest"
	"github.com/custos-ha/custos/plugins/dcs-etcd3/etcd3"
	"github.com/custos-ha/custos/testkit/servers"
)

// Shared by every test of the package: one etcd, one plugin build.
var (
	etcd *servers.Etcd
)

// minParallel is how many parallel tests run at once unless -parallel says
// otherwise. The tests mostly wait for TTLs to run out, so more of them than
// GOMAXPROCS (the default, 2 on CI machines) fit side by side.
const minParallel = 6

func TestMain(m *testing.M) {
	flag.Parse()
	sdktest.RaiseParallel(minParallel)
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	defer plugin.Close()
	var err error
	etcd, err = servers.StartEtcd(servers.EtcdConfig{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	etcd.Stop()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return code
}

// testTTL is the TTL of the tests here (the kit uses its own).
const testTTL = 3 * time.Second

func configJSON() []byte {
	return []byte(fmt.Sprintf(`{"hosts": [%q]}`, etcd.Endpoint))
}

func testLogger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "etcd3", Level: hclog.Warn, Output: os.Stderr})
}

// plugin is this plugin's binary, built once.
var plugin = sdktest.NewBuilder("dcs-etcd3")

func pluginPath(t *testing.T) string { return plugin.Path(t) }

func TestConformance(t *testing.T) {
	t.Parallel()
	dcstest.RunConformance(t, dcstest.Target{
		New:    func(*testing.T) dcs.Backend { return etcd3.New(testLogger()) },
		Config: configJSON(),
	})
}

func TestIdentity(t *testing.T) {
	t.Parallel()
	id, _ := dcstest.LaunchBinary(t, pluginPath(t))
	if id.Name != "etcd3" || !id.Serves(sdk.KindDCS) || id.Version == "" {
		t.Fatalf("identity %s", id)
	}
}

func ctxT(t *testing.T) context.Context { return sdktest.Context(t, 10*time.Second) }

func uniqueNamespace(t *testing.T) string { return sdktest.Namespace(t) }

func rawClient(t *testing.T) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.ClientURL()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func configure(t *testing.T, b dcs.Backend, ns, member string, ttl time.Duration) {
	t.Helper()
	err := b.Configure(ctxT(t), dcs.ConfigureRequest{
		Scope: "pg", Namespace: ns, Member: member, TTL: ttl, RetryTimeout: 2 * time.Second, Config: configJSON(),
	})
	if err != nil {
		t.Fatalf("configuring %s: %v", member, err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
}

func newBackend(t *testing.T, ns, member string, ttl time.Duration) *etcd3.Backend {
	t.Helper()
	b := etcd3.New(testLogger())
	configure(t, b, ns, member, ttl)
	return b
}

func mustGet(t *testing.T, c *clientv3.Client, key string) *clientv3.GetResponse {
	t.Helper()
	resp, err := c.Get(ctxT(t), key)
	if err != nil {
		t.Fatalf("raw get %s: %v", key, err)
	}
	return resp
}

// rawKV returns the key's value, or fails when absent.
func rawKV(t *testing.T, c *clientv3.Client, key string) (value []byte, modRev, createRev, lease int64) {
	t.Helper()
	resp := mustGet(t, c, key)
	if len(resp.Kvs) != 1 {
		t.Fatalf("raw get %s: %d keys", key, len(resp.Kvs))
	}
	kv := resp.Kvs[0]
	return kv.Value, kv.ModRevision, kv.CreateRevision, kv.Lease
}

func rev(t *testing.T, version string) int64 {
	t.Helper()
	r, err := strconv.ParseInt(version, 10, 64)
	if err != nil {
		t.Fatalf("version %q is not a revision: %v", version, err)
	}
	return r
}

// TestPatroniLayout checks what lands in etcd, key by key, against Patroni's
// etcd3 layout.
func TestPatroniLayout(t *testing.T) {
	t.Parallel()
	raw := rawClient(t)
	ns := uniqueNamespace(t)
	prefix := ns + "/pg/"
	a := newBackend(t, ns, "pg1", 5*time.Second)

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

	// leader: the plain member name, on the same lease as the member key.
	value, leaderRev, _, lease := rawKV(t, raw, prefix+"leader")
	if string(value) != "pg1" {
		t.Fatalf("leader value %q, want the plain name pg1", value)
	}
	if lease == 0 || leaderRev != rev(t, version) {
		t.Fatalf("leader lease %d mod_revision %d, AcquireLeader returned %s", lease, leaderRev, version)
	}
	value, _, _, memberLease := rawKV(t, raw, prefix+"members/pg1")
	if !bytes.Equal(value, member) {
		t.Fatalf("member value %q, want %q", value, member)
	}
	if memberLease != lease {
		t.Fatalf("member key lease %x, leader key lease %x: want one lease per member", memberLease, lease)
	}
	ttl, err := raw.TimeToLive(ctxT(t), clientv3.LeaseID(lease))
	if err != nil {
		t.Fatal(err)
	}
	if ttl.GrantedTTL != 5 {
		t.Fatalf("lease granted with TTL %d, want 5", ttl.GrantedTTL)
	}
	c, err := a.GetCluster(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if c.Leader == nil || c.Leader.Session != strconv.FormatInt(lease, 10) || c.Leader.Version != version {
		t.Fatalf("leader reads %+v, lease %d", c.Leader, lease)
	}
	if m := c.Member("pg1"); m == nil || m.Session != c.Leader.Session || !bytes.Equal(m.Data, member) {
		t.Fatalf("member reads %+v", m)
	}

	// Renewal only keeps the lease alive: the leader key is not rewritten.
	time.Sleep(1100 * time.Millisecond) // let the lease run down by a second
	for range 2 {
		if err := a.RenewLeader(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	if _, r, _, l := rawKV(t, raw, prefix+"leader"); r != leaderRev || l != lease {
		t.Fatalf("after RenewLeader mod_revision %d lease %x, want %d %x unchanged", r, l, leaderRev, lease)
	}
	if ttl, err := raw.TimeToLive(ctxT(t), clientv3.LeaseID(lease)); err != nil || ttl.TTL < 4 {
		t.Fatalf("after RenewLeader the lease has %v s left (%v), want the full TTL", ttl.TTL, err)
	}

	// CAS keys compare mod_revision.
	v1, err := a.CompareAndSet(ctxT(t), dcs.KeyConfig, []byte(`{"ttl": 30, "loop_wait": 10}`), "")
	if err != nil {
		t.Fatal(err)
	}
	value, modRev, createRev, l := rawKV(t, raw, prefix+"config")
	if string(value) != `{"ttl": 30, "loop_wait": 10}` || modRev != rev(t, v1) || createRev != modRev || l != 0 {
		t.Fatalf("config %q mod %d create %d lease %d, CAS returned %s", value, modRev, createRev, l, v1)
	}
	// patronictl edit-config writes behind our back.
	put, err := raw.Put(ctxT(t), prefix+"config", `{"ttl":20}`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.CompareAndSet(ctxT(t), dcs.KeyConfig, []byte(`{}`), v1); !errors.Is(err, dcs.ErrVersionMismatch) {
		t.Fatalf("CAS over a foreign write: want ErrVersionMismatch, got %v", err)
	}
	v2, err := a.CompareAndSet(ctxT(t), dcs.KeyConfig, []byte(`{"ttl":25}`), strconv.FormatInt(put.Header.Revision, 10))
	if err != nil {
		t.Fatalf("CAS with the mod_revision of a foreign write: %v", err)
	}
	if _, modRev, createRev2, _ := rawKV(t, raw, prefix+"config"); modRev != rev(t, v2) || createRev2 != createRev {
		t.Fatalf("config mod_revision %d create %d after CAS returning %s", modRev, createRev2, v2)
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
		if got, _, _, l := rawKV(t, raw, prefix+string(key)); string(got) != v || l != 0 {
			t.Fatalf("%s stored %q lease %d", key, got, l)
		}
	}
	resp, err := raw.Get(ctxT(t), prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	want := []string{"config", "failover", "failsafe", "history", "initialize", "leader", "members/pg1", "status", "sync"}
	for i := range want {
		want[i] = prefix + want[i]
	}
	if !slices.Equal(keys, want) {
		t.Fatalf("keys under %s:\n%q\nwant\n%q", prefix, keys, want)
	}

	// A TTL change moves both keys onto a new lease with the new TTL.
	if err := a.SetTTL(ctxT(t), 7*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := a.RenewLeader(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := a.TouchMember(ctxT(t), member); err != nil {
		t.Fatal(err)
	}
	value, r, _, newLease := rawKV(t, raw, prefix+"leader")
	if string(value) != "pg1" || newLease == lease || r == leaderRev {
		t.Fatalf("after SetTTL the leader is %q lease %x (was %x) mod_revision %d (was %d)", value, newLease, lease, r, leaderRev)
	}
	if _, _, _, l := rawKV(t, raw, prefix+"members/pg1"); l != newLease {
		t.Fatalf("member key on lease %x, leader key on %x", l, newLease)
	}
	if ttl, err := raw.TimeToLive(ctxT(t), clientv3.LeaseID(newLease)); err != nil || ttl.GrantedTTL != 7 {
		t.Fatalf("new lease TTL %+v %v, want 7", ttl, err)
	}

	// Releasing deletes the leader key only.
	if err := a.DeleteLeader(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if n := len(mustGet(t, raw, prefix+"leader").Kvs); n != 0 {
		t.Fatal("leader key still present after DeleteLeader")
	}
	if n := len(mustGet(t, raw, prefix+"members/pg1").Kvs); n != 1 {
		t.Fatal("DeleteLeader removed the member key")
	}
}

// TestLeaseLost checks that a lease etcd no longer knows (expired while
// the agent was stuck, or revoked) is replaced by a new one.
func TestLeaseLost(t *testing.T) {
	t.Parallel()
	raw := rawClient(t)
	ns := uniqueNamespace(t)
	prefix := ns + "/pg/"
	b := newBackend(t, ns, "pg1", testTTL)
	if _, err := b.AcquireLeader(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := b.TouchMember(ctxT(t), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	_, _, _, lease := rawKV(t, raw, prefix+"leader")
	if _, err := raw.Revoke(ctxT(t), clientv3.LeaseID(lease)); err != nil {
		t.Fatal(err)
	}
	if err := b.TouchMember(ctxT(t), []byte(`{"back":true}`)); err != nil {
		t.Fatalf("TouchMember after the lease was lost: %v", err)
	}
	if err := b.RenewLeader(ctxT(t)); err != nil {
		t.Fatalf("RenewLeader after the lease was lost: %v", err)
	}
	value, _, _, leaderLease := rawKV(t, raw, prefix+"leader")
	_, _, _, memberLease := rawKV(t, raw, prefix+"members/pg1")
	if string(value) != "pg1" || leaderLease == lease || leaderLease != memberLease {
		t.Fatalf("leader %q on lease %x, member on %x, lost lease %x", value, leaderLease, memberLease, lease)
	}
	// The same for a write that is not preceded by a renewal.
	if _, err := raw.Revoke(ctxT(t), clientv3.LeaseID(leaderLease)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.AcquireLeader(ctxT(t)); err != nil {
		t.Fatalf("AcquireLeader after the lease was lost: %v", err)
	}
	if err := b.TakeLeader(ctxT(t)); err != nil {
		t.Fatalf("TakeLeader: %v", err)
	}
}

// TestReadsPatroniCluster reads a cluster as Patroni writes it, and takes
// over a leader key written by a Patroni process of the same member.
func TestReadsPatroniCluster(t *testing.T) {
	t.Parallel()
	raw := rawClient(t)
	ns := uniqueNamespace(t)
	prefix := ns + "/pg/"
	patroniLease, err := raw.Grant(ctxT(t), 30)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range []struct {
		key, value string
		lease      clientv3.LeaseID
	}{
		{"leader", "pg1", patroniLease.ID},
		{"members/pg1", `{"role":"primary"}`, patroniLease.ID},
		{"members/pg2", `{"role":"replica"}`, 0},
		{"members/pg2/extra", `ignored`, 0},
		{"optime/leader", "25166136", 0},
		{"initialize", "7268616322854375442", 0},
	} {
		var opts []clientv3.OpOption
		if kv.lease != 0 {
			opts = append(opts, clientv3.WithLease(kv.lease))
		}
		if _, err := raw.Put(ctxT(t), prefix+kv.key, kv.value, opts...); err != nil {
			t.Fatal(err)
		}
	}
	b := newBackend(t, ns, "pg1", testTTL)
	c, err := b.GetCluster(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if c.Leader == nil || c.Leader.Name != "pg1" || c.Leader.Session != strconv.FormatInt(int64(patroniLease.ID), 10) {
		t.Fatalf("leader %+v", c.Leader)
	}
	if len(c.Members) != 2 || c.Member("pg2") == nil || string(c.Member("pg2").Data) != `{"role":"replica"}` {
		t.Fatalf("members %+v", c.Members)
	}
	if c.Initialize == nil || string(c.Initialize.Data) != "7268616322854375442" {
		t.Fatalf("initialize %+v", c.Initialize)
	}
	_, before, _, _ := rawKV(t, raw, prefix+"leader")
	if err := b.RenewLeader(ctxT(t)); err != nil {
		t.Fatalf("renewing a leader key of my name on a foreign lease: %v", err)
	}
	value, after, _, lease := rawKV(t, raw, prefix+"leader")
	if string(value) != "pg1" || lease == int64(patroniLease.ID) || after == before {
		t.Fatalf("leader %q lease %x mod_revision %d->%d: want it moved onto custos's lease", value, lease, before, after)
	}
	// The other member cannot renew or delete it.
	other := newBackend(t, ns, "pg2", testTTL)
	if err := other.RenewLeader(ctxT(t)); !errors.Is(err, dcs.ErrVersionMismatch) {
		t.Fatalf("pg2 renewing pg1's key: want ErrVersionMismatch, got %v", err)
	}
	if err := other.DeleteLeader(ctxT(t)); !errors.Is(err, dcs.ErrVersionMismatch) {
		t.Fatalf("pg2 deleting pg1's key: want ErrVersionMismatch, got %v", err)
	}
	if _, err := raw.Revoke(ctxT(t), patroniLease.ID); err != nil {
		t.Fatal(err)
	}
}

// TestBinary runs the conformance kit and the crash tests through the
// built plugin binary. Beyond the kit's checks: the restarted process's
// renewals keep the key on its lease without rewriting it.
func TestBinary(t *testing.T) {
	t.Parallel()
	raw := rawClient(t)
	var renewedRev int64
	leaderRev := func(t *testing.T, p dcstest.Place) int64 {
		_, rev, _, _ := rawKV(t, raw, p.Namespace+"/"+p.Scope+"/leader")
		return rev
	}
	dcstest.RunBinary(t, dcstest.Binary{
		Path:   pluginPath(t),
		Config: configJSON(),
		Restart: dcstest.RestartChecks{
			Renewed: func(t *testing.T, p dcstest.Place) { renewedRev = leaderRev(t, p) },
			Expired: func(t *testing.T, p dcstest.Place) {
				if rev := leaderRev(t, p); rev != renewedRev {
					t.Fatalf("renewals on the same lease rewrote the key: mod_revision %d -> %d", renewedRev, rev)
				}
			},
		},
	})
}

// TestWatchSeesForeignChanges checks event paths and types for writes made
// by other clients, including a lease revocation.
func TestWatchSeesForeignChanges(t *testing.T) {
	t.Parallel()
	raw := rawClient(t)
	ns := uniqueNamespace(t)
	prefix := ns + "/pg/"
	b := newBackend(t, ns, "w", testTTL)
	var (
		mu     sync.Mutex
		events []dcs.Event
	)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- b.Watch(ctx, func(e dcs.Event) {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch after cancel: %v", err)
		}
	})
	// The watch starts after a read; write until the first event shows.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := raw.Put(ctxT(t), prefix+"status", `{}`); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		n := len(events)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no event for a write")
		}
		time.Sleep(50 * time.Millisecond) // give the watch time to start
	}
	lease, err := raw.Grant(ctxT(t), 60)
	if err != nil {
		t.Fatal(err)
	}
	put, err := raw.Put(ctxT(t), prefix+"leader", "pg9", clientv3.WithLease(lease.ID))
	if err != nil {
		t.Fatal(err)
	}
	deep, err := raw.Put(ctxT(t), prefix+"members/pg9/deep", "x")
	if err != nil {
		t.Fatal(err)
	}
	revoke, err := raw.Revoke(ctxT(t), lease.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Other tests write to the same etcd: take each revision from its reply.
	want := []dcs.Event{
		{Type: dcs.EventPut, Path: "leader", Version: strconv.FormatInt(put.Header.Revision, 10)},
		{Type: dcs.EventPut, Path: "members/pg9/deep", Version: strconv.FormatInt(deep.Header.Revision, 10)},
		{Type: dcs.EventDelete, Path: "leader", Version: strconv.FormatInt(revoke.Header.Revision, 10)},
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		var got []dcs.Event
		for _, e := range events {
			if e.Path != "status" {
				got = append(got, e)
			}
		}
		mu.Unlock()
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("events %+v, want %+v", got, want)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}
