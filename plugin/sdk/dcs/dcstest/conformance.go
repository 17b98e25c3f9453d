package dcstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// Target describes the store under test.
type Target struct {
	// New returns a new, unconfigured client of the store: what a separate
	// agent would have (its own connection, lease or session). The kit
	// configures it and closes it at the end of the test.
	New func(t *testing.T) dcs.Backend
	// Config is the JSON of the plugin's configuration section that points
	// at the store.
	Config []byte
	// Capabilities are the ones the plugin announces in its identity; the
	// kit adapts its expectations to them.
	Capabilities map[string]string
	// Namespace, when set, is used instead of a fresh one per test.
	Namespace string
}

// Timing defaults of the kit.
const (
	// defaultTTL is short enough to keep expiry tests quick and long enough
	// for every real store's minimum (etcd grants >= 2 s leases reliably).
	defaultTTL = 3 * time.Second
	// maxValueSize is the large-value size the contract promises unless the
	// plugin announces a smaller dcs.max_value_bytes.
	maxValueSize = 1 << 20
	// watchLatency is how soon after a leader key is gone a watcher must hear.
	watchLatency = time.Second
	// expirySlack is tolerated beyond TTL (plus the announced expiry delay)
	// for the store to drop an unrenewed key.
	expirySlack = 2 * time.Second
	// opTimeout bounds every single call the kit makes.
	opTimeout = 10 * time.Second
)

// CapMaxValueBytes is the capability a plugin announces when its store
// cannot hold a 1 MiB value (Kubernetes annotations).
const CapMaxValueBytes = "dcs.max_value_bytes"

// RunConformance runs the whole kit. Subtests run in parallel, each in a
// cluster scope of its own.
func RunConformance(t *testing.T, target Target) {
	k := newKit(t, target)
	runParallel(t, []subtest{
		{"EmptyCluster", k.testEmptyCluster},
		{"ValidateRejectsGarbage", k.testValidateRejectsGarbage},
		{"LeaderRace", k.testLeaderRace},
		{"CompareAndSet", k.testCompareAndSet},
		{"CompareAndDelete", k.testCompareAndDelete},
		{"ConcurrentInitialize", k.testConcurrentInitialize},
		{"PlainKeys", k.testPlainKeys},
		{"Members", k.testMembers},
		{"DeleteLeader", k.testDeleteLeader},
		{"RenewAndTakeLeader", k.testRenewAndTakeLeader},
		{"TTLExpiry", k.testTTLExpiry},
		{"RenewalKeepsAlive", k.testRenewalKeepsAlive},
		{"WatchLeaderDelete", k.testWatchLeaderDelete},
		{"WatchLeaderExpiry", k.testWatchLeaderExpiry},
		{"LargeValue", k.testLargeValue},
		{"CloseDuringWatch", k.testCloseDuringWatch},
		{"DeleteCluster", k.testDeleteCluster},
	})
}

// subtest is one test of a kit.
type subtest struct {
	name string
	fn   func(t *testing.T)
}

// runParallel runs the tests as parallel subtests.
func runParallel(t *testing.T, tests []subtest) {
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t)
		})
	}
}

type kit struct {
	target      Target
	ttl         time.Duration
	expiryDelay time.Duration
	maxValue    int
}

// newKit reads the timing and size expectations from the capabilities the
// plugin announces.
func newKit(t *testing.T, target Target) *kit {
	t.Helper()
	k := &kit{target: target, ttl: defaultTTL}
	if v := target.Capabilities[dcs.CapMinTTL]; v != "" {
		secs, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("capability %s=%q is not a whole number of seconds", dcs.CapMinTTL, v)
		}
		if min := time.Duration(secs) * time.Second; min > k.ttl {
			k.ttl = min
		}
	}
	if v := target.Capabilities[dcs.CapExpiryDelay]; v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("capability %s=%q is not a whole number of milliseconds", dcs.CapExpiryDelay, v)
		}
		k.expiryDelay = time.Duration(ms) * time.Millisecond
	}
	k.maxValue = maxValueSize
	if v := target.Capabilities[CapMaxValueBytes]; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("capability %s=%q is not a number", CapMaxValueBytes, v)
		}
		k.maxValue = n
	}
	return k
}

// cluster is one test's scope with its clients.
type cluster struct {
	t         *testing.T
	k         *kit
	scope     string
	namespace string
}

func (k *kit) newCluster(t *testing.T) *cluster {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	ns := k.target.Namespace
	if ns == "" {
		ns = "/conformance-" + hex.EncodeToString(b[:])
	}
	return &cluster{t: t, k: k, scope: "c" + hex.EncodeToString(b[:]), namespace: ns}
}

// client returns a configured client acting as the member.
func (c *cluster) client(member string) dcs.Backend {
	c.t.Helper()
	b := c.k.target.New(c.t)
	c.configure(b, member)
	c.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		_ = b.Close(ctx)
	})
	return b
}

// configure binds b to the cluster as the member, as the host does with a
// new or restarted plugin.
func (c *cluster) configure(b dcs.Backend, member string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	err := b.Configure(ctx, dcs.ConfigureRequest{
		Scope:        c.scope,
		Namespace:    c.namespace,
		Member:       member,
		TTL:          c.k.ttl,
		RetryTimeout: c.k.ttl / 3,
		Config:       c.k.target.Config,
	})
	if err != nil {
		c.t.Fatalf("configuring client %s: %v", member, err)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	t.Cleanup(cancel)
	return ctx
}

func read(t *testing.T, b dcs.Backend) *dcs.Cluster {
	t.Helper()
	c, err := b.GetCluster(ctxT(t))
	if err != nil {
		t.Fatalf("GetCluster: %v", err)
	}
	return c
}

func leaderName(c *dcs.Cluster) string {
	if c.Leader == nil {
		return ""
	}
	return c.Leader.Name
}

func (k *kit) testEmptyCluster(t *testing.T) {
	c := k.newCluster(t)
	a := c.client("a")
	got := read(t, a)
	if got.Leader != nil || len(got.Members) != 0 {
		t.Fatalf("fresh cluster has leader %+v, members %d", got.Leader, len(got.Members))
	}
	for _, key := range dcs.Keys {
		if v := got.Get(key); v != nil {
			t.Errorf("fresh cluster has %s = %q", key, v.Data)
		}
	}
}

func (k *kit) testValidateRejectsGarbage(t *testing.T) {
	b := k.target.New(t)
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	if err := b.Validate(ctxT(t), []byte(`{"no_such_key_in_any_plugin": 1}`)); err == nil {
		t.Fatal("Validate accepted an unknown key")
	}
	if err := b.Validate(ctxT(t), k.target.Config); err != nil {
		t.Fatalf("Validate rejected the target's own config: %v", err)
	}
}

func (k *kit) testLeaderRace(t *testing.T) {
	c := k.newCluster(t)
	const n = 10
	clients := make([]dcs.Backend, n)
	for i := range clients {
		clients[i] = c.client(fmt.Sprintf("m%d", i))
	}
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		results = make([]error, n)
	)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, results[i] = clients[i].AcquireLeader(ctxT(t))
		}()
	}
	close(start)
	wg.Wait()
	winner := ""
	for i, err := range results {
		switch {
		case err == nil:
			if winner != "" {
				t.Fatalf("two winners: %s and m%d", winner, i)
			}
			winner = fmt.Sprintf("m%d", i)
		case errors.Is(err, dcs.ErrExists):
		default:
			t.Errorf("m%d: AcquireLeader: want nil or ErrExists, got %v", i, err)
		}
	}
	if winner == "" {
		t.Fatal("no client won the leader race")
	}
	for _, b := range clients {
		if got := leaderName(read(t, b)); got != winner {
			t.Fatalf("leader reads %q, the winner was %q", got, winner)
		}
	}
	if _, err := clients[0].AcquireLeader(ctxT(t)); !errors.Is(err, dcs.ErrExists) {
		t.Fatalf("AcquireLeader with a leader present: want ErrExists, got %v", err)
	}
}

// casKeys are the keys Patroni writes with compare-and-set.
var casKeys = []dcs.Key{dcs.KeyInitialize, dcs.KeyConfig, dcs.KeyFailover, dcs.KeySync}

func (k *kit) testCompareAndSet(t *testing.T) {
	c := k.newCluster(t)
	a, b := c.client("a"), c.client("b")
	for _, key := range casKeys {
		v1, err := a.CompareAndSet(ctxT(t), key, []byte("one"), "")
		if err != nil {
			t.Fatalf("%s: create-only on absent key: %v", key, err)
		}
		if _, err := b.CompareAndSet(ctxT(t), key, []byte("two"), ""); !errors.Is(err, dcs.ErrExists) {
			t.Fatalf("%s: create-only on present key: want ErrExists, got %v", key, err)
		}
		got := read(t, b).Get(key)
		if got == nil || string(got.Data) != "one" || got.Version != v1 {
			t.Fatalf("%s: after create read %+v, want data one version %s", key, got, v1)
		}
		v2, err := b.CompareAndSet(ctxT(t), key, []byte("two"), v1)
		if err != nil {
			t.Fatalf("%s: CAS with the current version: %v", key, err)
		}
		if v2 == v1 {
			t.Fatalf("%s: version did not change on write (%s)", key, v2)
		}
		if _, err := a.CompareAndSet(ctxT(t), key, []byte("three"), v1); !errors.Is(err, dcs.ErrVersionMismatch) {
			t.Fatalf("%s: CAS with a stale version: want ErrVersionMismatch, got %v", key, err)
		}
		got = read(t, a).Get(key)
		if got == nil || string(got.Data) != "two" || got.Version != v2 {
			t.Fatalf("%s: a rejected CAS changed the value: %+v", key, got)
		}
	}
	// A version given for an absent key never creates it.
	if _, err := a.CompareAndSet(ctxT(t), dcs.KeyHistory, []byte("x"), "12345"); !errors.Is(err, dcs.ErrNotFound) && !errors.Is(err, dcs.ErrVersionMismatch) {
		t.Fatalf("CAS with a version on an absent key: want ErrNotFound or ErrVersionMismatch, got %v", err)
	}
	if got := read(t, a).History; got != nil {
		t.Fatalf("CAS with a version created an absent key: %q", got.Data)
	}
}

func (k *kit) testCompareAndDelete(t *testing.T) {
	c := k.newCluster(t)
	a := c.client("a")
	for _, key := range []dcs.Key{dcs.KeySync, dcs.KeyInitialize} {
		v1, err := a.CompareAndSet(ctxT(t), key, []byte(`{"leader":"a"}`), "")
		if err != nil {
			t.Fatal(err)
		}
		v2, err := a.CompareAndSet(ctxT(t), key, []byte(`{"leader":"a","sync_standby":"b"}`), v1)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.CompareAndDelete(ctxT(t), key, v1); !errors.Is(err, dcs.ErrVersionMismatch) {
			t.Fatalf("%s: delete with a stale version: want ErrVersionMismatch, got %v", key, err)
		}
		if read(t, a).Get(key) == nil {
			t.Fatalf("%s: a rejected delete removed the key", key)
		}
		if err := a.CompareAndDelete(ctxT(t), key, v2); err != nil {
			t.Fatalf("%s: delete with the current version: %v", key, err)
		}
		if got := read(t, a).Get(key); got != nil {
			t.Fatalf("%s: still present after delete: %q", key, got.Data)
		}
		if err := a.CompareAndDelete(ctxT(t), key, ""); err != nil {
			t.Fatalf("%s: unconditional delete of an absent key: %v", key, err)
		}
	}
}

func (k *kit) testConcurrentInitialize(t *testing.T) {
	c := k.newCluster(t)
	a, b := c.client("a"), c.client("b")
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  [2]error
		vers  [2]string
	)
	for i, cl := range []dcs.Backend{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			vers[i], errs[i] = cl.CompareAndSet(ctxT(t), dcs.KeyInitialize, []byte(""), "")
		}()
	}
	close(start)
	wg.Wait()
	wins := 0
	winner := 0
	for i, err := range errs {
		if err == nil {
			wins++
			winner = i
		} else if !errors.Is(err, dcs.ErrExists) {
			t.Fatalf("initialize: want nil or ErrExists, got %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d of 2 concurrent initializations won", wins)
	}
	// The winner writes the system identifier over its own version.
	clients := []dcs.Backend{a, b}
	if _, err := clients[winner].CompareAndSet(ctxT(t), dcs.KeyInitialize, []byte("7268616322854375442"), vers[winner]); err != nil {
		t.Fatalf("writing the system identifier: %v", err)
	}
	if got := read(t, clients[1-winner]).Initialize; got == nil || string(got.Data) != "7268616322854375442" {
		t.Fatalf("initialize reads %+v", got)
	}
	// Cancelling the initialization lets a new race start.
	if err := clients[winner].CompareAndDelete(ctxT(t), dcs.KeyInitialize, ""); err != nil {
		t.Fatalf("cancel initialization: %v", err)
	}
	if _, err := clients[1-winner].CompareAndSet(ctxT(t), dcs.KeyInitialize, []byte(""), ""); err != nil {
		t.Fatalf("initialize after cancel: %v", err)
	}
}

func (k *kit) testPlainKeys(t *testing.T) {
	c := k.newCluster(t)
	a, b := c.client("a"), c.client("b")
	values := map[dcs.Key]string{
		dcs.KeyHistory:  `[[1,25165984,"no recovery target specified","2024-01-01T00:00:00+00:00","a"]]`,
		dcs.KeyStatus:   `{"optime":25166136,"slots":{"b":25166136}}`,
		dcs.KeyFailsafe: `{"a":"http://127.0.0.1:8008/patroni","b":"http://127.0.0.1:8009/patroni"}`,
	}
	for key, v := range values {
		if err := a.Set(ctxT(t), key, []byte(v)); err != nil {
			t.Fatalf("Set %s: %v", key, err)
		}
	}
	got := read(t, b)
	for key, v := range values {
		if g := got.Get(key); g == nil || string(g.Data) != v {
			t.Fatalf("%s reads %+v, want %s", key, g, v)
		}
	}
	if err := b.Set(ctxT(t), dcs.KeyStatus, []byte(`{"optime":1}`)); err != nil {
		t.Fatal(err)
	}
	if g := read(t, a).Status; g == nil || string(g.Data) != `{"optime":1}` {
		t.Fatalf("status after overwrite reads %+v", g)
	}
}

func (k *kit) testMembers(t *testing.T) {
	c := k.newCluster(t)
	names := []string{"a", "b", "c"}
	clients := map[string]dcs.Backend{}
	for _, n := range names {
		clients[n] = c.client(n)
		if err := clients[n].TouchMember(ctxT(t), []byte(`{"name":"`+n+`"}`)); err != nil {
			t.Fatalf("TouchMember %s: %v", n, err)
		}
	}
	if err := clients["b"].TouchMember(ctxT(t), []byte(`{"name":"b","state":"running"}`)); err != nil {
		t.Fatal(err)
	}
	got := read(t, clients["a"])
	if len(got.Members) != 3 {
		t.Fatalf("read %d members, want 3", len(got.Members))
	}
	for _, n := range names {
		m := got.Member(n)
		if m == nil {
			t.Fatalf("member %s missing", n)
		}
		want := `{"name":"` + n + `"}`
		if n == "b" {
			want = `{"name":"b","state":"running"}`
		}
		if string(m.Data) != want {
			t.Errorf("member %s reads %s, want %s", n, m.Data, want)
		}
	}
}

func (k *kit) testDeleteLeader(t *testing.T) {
	c := k.newCluster(t)
	a, b := c.client("a"), c.client("b")
	if _, err := a.AcquireLeader(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteLeader(ctxT(t)); !errors.Is(err, dcs.ErrVersionMismatch) {
		t.Fatalf("deleting another member's leader key: want ErrVersionMismatch, got %v", err)
	}
	if got := leaderName(read(t, b)); got != "a" {
		t.Fatalf("after a refused delete the leader reads %q", got)
	}
	if err := a.DeleteLeader(ctxT(t)); err != nil {
		t.Fatalf("deleting my own leader key: %v", err)
	}
	if got := read(t, b).Leader; got != nil {
		t.Fatalf("leader still present after delete: %+v", got)
	}
	if err := b.DeleteLeader(ctxT(t)); err != nil {
		t.Fatalf("deleting an absent leader key: %v", err)
	}
	if _, err := b.AcquireLeader(ctxT(t)); err != nil {
		t.Fatalf("acquiring after release: %v", err)
	}
}

func (k *kit) testRenewAndTakeLeader(t *testing.T) {
	c := k.newCluster(t)
	a, b := c.client("a"), c.client("b")
	if _, err := a.AcquireLeader(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := a.RenewLeader(ctxT(t)); err != nil {
		t.Fatalf("renewing my leader key: %v", err)
	}
	if err := b.RenewLeader(ctxT(t)); !errors.Is(err, dcs.ErrVersionMismatch) {
		t.Fatalf("renewing another member's leader key: want ErrVersionMismatch, got %v", err)
	}
	if got := leaderName(read(t, b)); got != "a" {
		t.Fatalf("a refused renewal changed the leader to %q", got)
	}
	if err := b.TakeLeader(ctxT(t)); err != nil {
		t.Fatalf("TakeLeader: %v", err)
	}
	if got := leaderName(read(t, a)); got != "b" {
		t.Fatalf("after TakeLeader the leader reads %q", got)
	}
	if err := a.RenewLeader(ctxT(t)); !errors.Is(err, dcs.ErrVersionMismatch) {
		t.Fatalf("renewing a lost leader key: want ErrVersionMismatch, got %v", err)
	}
	// Renewing a key that is gone creates it again.
	if err := b.DeleteLeader(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := a.RenewLeader(ctxT(t)); err != nil {
		t.Fatalf("renewing an absent leader key: %v", err)
	}
	if got := leaderName(read(t, b)); got != "a" {
		t.Fatalf("after renewing an absent key the leader reads %q", got)
	}
}

// expiryDeadline is how long after the last renewal an unrenewed key may
// still be visible.
func (k *kit) expiryDeadline() time.Duration { return k.ttl + k.expiryDelay + expirySlack }

// waitGone polls until the leader and member a are gone and returns when
// that was seen.
func waitGone(t *testing.T, b dcs.Backend, deadline time.Time) time.Time {
	t.Helper()
	for {
		got := read(t, b)
		if got.Leader == nil && got.Member("a") == nil {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("leader %+v and member a still present %v after the last renewal", got.Leader, time.Until(deadline))
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}

func (k *kit) testTTLExpiry(t *testing.T) {
	c := k.newCluster(t)
	a, b := c.client("a"), c.client("b")
	if _, err := a.AcquireLeader(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := a.TouchMember(ctxT(t), []byte(`{"state":"running"}`)); err != nil {
		t.Fatal(err)
	}
	last := time.Now()
	// Half a TTL on, both keys are still there.
	time.Sleep(k.ttl / 2) // the keys must outlive half their TTL
	got := read(t, b)
	if leaderName(got) != "a" || got.Member("a") == nil {
		t.Fatalf("keys gone before their TTL: leader %+v, members %d", got.Leader, len(got.Members))
	}
	gone := waitGone(t, b, last.Add(k.expiryDeadline()))
	t.Logf("keys gone %v after the last renewal (ttl %v)", gone.Sub(last).Round(10*time.Millisecond), k.ttl)
	if _, err := b.AcquireLeader(ctxT(t)); err != nil {
		t.Fatalf("acquiring an expired leader key: %v", err)
	}
}

func (k *kit) testRenewalKeepsAlive(t *testing.T) {
	c := k.newCluster(t)
	a, b := c.client("a"), c.client("b")
	if _, err := a.AcquireLeader(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := a.TouchMember(ctxT(t), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	// Past the point where unrenewed keys are certainly gone, plus one
	// renewal period, so that keys kept by the first renewals alone would be
	// caught too. (A fixed 3 x TTL made this the one-minute long pole of
	// stores with a 20 s minimum TTL.)
	end := time.Now().Add(k.expiryDeadline() + k.ttl/3)
	nextRenew := time.Now().Add(k.ttl / 3)
	for time.Now().Before(end) {
		if time.Now().After(nextRenew) {
			if err := a.RenewLeader(ctxT(t)); err != nil {
				t.Fatalf("RenewLeader: %v", err)
			}
			if err := a.TouchMember(ctxT(t), []byte(`{}`)); err != nil {
				t.Fatalf("TouchMember: %v", err)
			}
			nextRenew = time.Now().Add(k.ttl / 3)
		}
		got := read(t, b)
		if leaderName(got) != "a" || got.Member("a") == nil {
			t.Fatalf("renewed keys disappeared: leader %+v, members %d", got.Leader, len(got.Members))
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
}

// watcher runs Watch in the background and records leader events.
type watcher struct {
	mu     sync.Mutex
	events []timedEvent
	cancel context.CancelFunc
	done   chan error
}

type timedEvent struct {
	at time.Time
	dcs.Event
}

func startWatch(t *testing.T, b dcs.Backend) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{cancel: cancel, done: make(chan error, 1)}
	go func() {
		w.done <- b.Watch(ctx, func(e dcs.Event) {
			w.mu.Lock()
			w.events = append(w.events, timedEvent{at: time.Now(), Event: e})
			w.mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-w.done:
		case <-time.After(opTimeout):
			t.Error("Watch did not return after its context was cancelled")
		}
	})
	return w
}

// waitEvent waits for an event on path of the type, seen after since.
func (w *watcher) waitEvent(t *testing.T, typ dcs.EventType, path string, since time.Time, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		for _, e := range w.events {
			if e.Type == typ && e.Path == path && !e.at.Before(since) {
				w.mu.Unlock()
				return e.at
			}
		}
		w.mu.Unlock()
		select {
		case err := <-w.done:
			t.Fatalf("watch ended while waiting for %s %s: %v", typ, path, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("no %s event for %q within %v", typ, path, timeout)
	return time.Time{}
}

// waitWatching makes sure the watch is established by writing a key until
// its event arrives. Each write carries a new value: a store may treat
// rewriting the same bytes as no change at all (Consul keeps the
// ModifyIndex and wakes no watcher).
func (w *watcher) waitWatching(t *testing.T, b dcs.Backend) {
	t.Helper()
	deadline := time.Now().Add(opTimeout)
	for i := 0; time.Now().Before(deadline); i++ {
		if err := b.Set(ctxT(t), dcs.KeyStatus, []byte(fmt.Sprintf(`{"optime":%d}`, i))); err != nil {
			t.Fatal(err)
		}
		w.mu.Lock()
		n := len(w.events)
		w.mu.Unlock()
		if n > 0 {
			return
		}
		time.Sleep(100 * time.Millisecond) // give the watch time to start
	}
	t.Fatal("the watch delivered no event for a write")
}

func (k *kit) testWatchLeaderDelete(t *testing.T) {
	c := k.newCluster(t)
	a, b := c.client("a"), c.client("b")
	w := startWatch(t, b)
	w.waitWatching(t, a)
	start := time.Now()
	if _, err := a.AcquireLeader(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	w.waitEvent(t, dcs.EventPut, dcs.LeaderPath, start, watchLatency)
	if err := a.TouchMember(ctxT(t), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	w.waitEvent(t, dcs.EventPut, dcs.MembersPath+"a", start, watchLatency)
	del := time.Now()
	if err := a.DeleteLeader(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	at := w.waitEvent(t, dcs.EventDelete, dcs.LeaderPath, del, watchLatency)
	t.Logf("leader delete event after %v", at.Sub(del).Round(time.Millisecond))
}

func (k *kit) testWatchLeaderExpiry(t *testing.T) {
	c := k.newCluster(t)
	a, b, poller := c.client("a"), c.client("b"), c.client("p")
	w := startWatch(t, b)
	w.waitWatching(t, a)
	if _, err := a.AcquireLeader(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := a.TouchMember(ctxT(t), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	last := time.Now()
	gone := waitGone(t, poller, last.Add(k.expiryDeadline()))
	// The event may come before the poller notices; it must not come later
	// than watchLatency after the key was seen gone.
	at := w.waitEvent(t, dcs.EventDelete, dcs.LeaderPath, last, time.Until(gone.Add(watchLatency)))
	t.Logf("leader expiry event %v after the last renewal, key seen gone after %v",
		at.Sub(last).Round(10*time.Millisecond), gone.Sub(last).Round(10*time.Millisecond))
}

func (k *kit) testLargeValue(t *testing.T) {
	c := k.newCluster(t)
	a, b := c.client("a"), c.client("b")
	big := make([]byte, k.maxValue)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	// Values are JSON text in practice; keep the bytes printable.
	data := []byte(hex.EncodeToString(big))[:k.maxValue]
	if _, err := a.CompareAndSet(ctxT(t), dcs.KeyConfig, data, ""); err != nil {
		t.Fatalf("writing a %d-byte config: %v", len(data), err)
	}
	if err := a.TouchMember(ctxT(t), data); err != nil {
		t.Fatalf("writing a %d-byte member value: %v", len(data), err)
	}
	got := read(t, b)
	if got.Config == nil || !bytes.Equal(got.Config.Data, data) {
		t.Fatalf("config did not round-trip (%d bytes read)", len(got.Config.Data))
	}
	if m := got.Member("a"); m == nil || !bytes.Equal(m.Data, data) {
		t.Fatal("member value did not round-trip")
	}
}

func (k *kit) testCloseDuringWatch(t *testing.T) {
	c := k.newCluster(t)
	a := c.client("a")
	b := k.target.New(t)
	if err := b.Configure(ctxT(t), dcs.ConfigureRequest{
		Scope: c.scope, Namespace: c.namespace, Member: "b", TTL: k.ttl, RetryTimeout: k.ttl / 3, Config: k.target.Config,
	}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	var events sync.WaitGroup
	events.Add(1)
	var once sync.Once
	go func() {
		done <- b.Watch(context.Background(), func(dcs.Event) { once.Do(events.Done) })
	}()
	// Make sure the watch is open.
	watching := make(chan struct{})
	go func() { events.Wait(); close(watching) }()
	// New values each time, as in waitWatching.
	deadline := time.Now().Add(opTimeout)
	for i := 0; ; i++ {
		if err := a.Set(ctxT(t), dcs.KeyStatus, []byte(fmt.Sprintf(`{"optime":%d}`, i))); err != nil {
			t.Fatal(err)
		}
		select {
		case <-watching:
		case <-time.After(100 * time.Millisecond):
			if time.Now().Before(deadline) {
				continue
			}
			_ = b.Close(ctxT(t))
			t.Fatal("the watch delivered no event for a write")
		}
		break
	}
	start := time.Now()
	closed := make(chan error, 1)
	go func() { closed <- b.Close(ctxT(t)) }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked for 5 s during an open watch")
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return within 5 s of Close")
	}
	t.Logf("Close and Watch returned after %v", time.Since(start).Round(time.Millisecond))
}

func (k *kit) testDeleteCluster(t *testing.T) {
	c := k.newCluster(t)
	a, b := c.client("a"), c.client("b")
	if _, err := a.AcquireLeader(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := a.TouchMember(ctxT(t), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	for _, key := range dcs.Keys {
		if err := a.Set(ctxT(t), key, []byte(`{}`)); err != nil {
			t.Fatalf("Set %s: %v", key, err)
		}
	}
	// Another cluster in the same namespace must survive.
	other := &cluster{t: t, k: k, scope: c.scope + "-other", namespace: c.namespace}
	o := other.client("o")
	if err := o.Set(ctxT(t), dcs.KeyConfig, []byte(`{"keep":true}`)); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteCluster(ctxT(t)); err != nil {
		t.Fatalf("DeleteCluster: %v", err)
	}
	got := read(t, a)
	if got.Leader != nil || len(got.Members) != 0 {
		t.Fatalf("after DeleteCluster: leader %+v, %d members", got.Leader, len(got.Members))
	}
	for _, key := range dcs.Keys {
		if v := got.Get(key); v != nil {
			t.Errorf("after DeleteCluster %s = %q", key, v.Data)
		}
	}
	if v := read(t, o).Config; v == nil || string(v.Data) != `{"keep":true}` {
		t.Fatalf("DeleteCluster removed another cluster's config: %+v", v)
	}
}
