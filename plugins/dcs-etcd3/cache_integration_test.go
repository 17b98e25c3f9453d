//go:build integration

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
	"github.com/custos-ha/custos/plugins/dcs-etcd3/etcd3"
	"github.com/custos-ha/custos/testkit/servers"
)

// ownEtcd starts an etcd for one test, so that its request counters see
// that test's requests only.
func ownEtcd(t *testing.T) *servers.Etcd {
	t.Helper()
	srv, err := servers.StartEtcd(servers.EtcdConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv
}

func configureOn(t *testing.T, srv *servers.Etcd, ns, member string, ttl time.Duration) *etcd3.Backend {
	t.Helper()
	b := etcd3.New(testLogger())
	err := b.Configure(ctxT(t), dcs.ConfigureRequest{
		Scope: "pg", Namespace: ns, Member: member, TTL: ttl, RetryTimeout: 2 * time.Second,
		Config: []byte(fmt.Sprintf(`{"hosts": [%q]}`, srv.Endpoint)),
	})
	if err != nil {
		t.Fatalf("configuring %s: %v", member, err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	return b
}

func rawClientOn(t *testing.T, srv *servers.Etcd) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.ClientURL()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// requests are etcd's gRPC counters per method: RPCs started (a unary call,
// or a stream opened) and messages received (every unary call and every
// message on a stream: a keep-alive, a watch creation, a progress request).
type requests struct {
	started, received map[string]float64
}

// counts reads etcd's /metrics (plain HTTP, not counted itself).
func counts(t *testing.T, srv *servers.Etcd) requests {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodGet, srv.ClientURL()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("reading etcd metrics: %v", err)
	}
	defer resp.Body.Close()
	r := requests{started: map[string]float64{}, received: map[string]float64{}}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var into map[string]float64
		switch {
		case strings.HasPrefix(line, "grpc_server_started_total{"):
			into = r.started
		case strings.HasPrefix(line, "grpc_server_msg_received_total{"):
			into = r.received
		default:
			continue
		}
		labels, value, ok := strings.Cut(line[strings.IndexByte(line, '{')+1:], "} ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			t.Fatalf("parsing %q: %v", line, err)
		}
		for l := range strings.SplitSeq(labels, ",") {
			if m, ok := strings.CutPrefix(l, `grpc_method="`); ok {
				into[strings.TrimSuffix(m, `"`)] += v
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(r.received) == 0 {
		t.Fatal("no grpc_server_msg_received_total in etcd's metrics")
	}
	return r
}

// since is the difference per method between two readings.
func (r requests) since(before requests) requests {
	d := requests{started: map[string]float64{}, received: map[string]float64{}}
	for m, v := range r.started {
		if x := v - before.started[m]; x != 0 {
			d.started[m] = x
		}
	}
	for m, v := range r.received {
		if x := v - before.received[m]; x != 0 {
			d.received[m] = x
		}
	}
	return d
}

// per renders the counts divided by n, e.g. "LeaseKeepAlive 1.00 Watch 1.00".
func per(m map[string]float64, n int) string {
	var names []string
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	var parts []string
	var total float64
	for _, k := range names {
		parts = append(parts, fmt.Sprintf("%s %.2f", k, m[k]/float64(n)))
		total += m[k]
	}
	if len(parts) == 0 {
		return "0"
	}
	return fmt.Sprintf("%.2f (%s)", total/float64(n), strings.Join(parts, ", "))
}

// cachedRead polls GetCluster until one call takes no Range (the
// backend's cache is in sync and etcd answered its progress request within
// syncWait) and returns what that call read.
func cachedRead(t *testing.T, srv *servers.Etcd, b dcs.Backend) *dcs.Cluster {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		before := counts(t, srv)
		c, err := b.GetCluster(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if counts(t, srv).since(before).started["Range"] == 0 {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatal("GetCluster still reads etcd with a Range")
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

// TestRequestsPerCycle runs HA cycles of a leader (GetCluster, RenewLeader,
// TouchMember) and of a replica (GetCluster, TouchMember) with unchanged
// member data against an etcd of their own, and checks what reaches etcd:
// no Range, no Txn, no Put, exactly one keep-alive per leader cycle, and one
// progress request on the watch stream per GetCluster.
func TestRequestsPerCycle(t *testing.T) {
	t.Parallel()
	srv := ownEtcd(t)
	// A long TTL: TouchMember refreshes after ttl/3, and the replica must
	// not reach that within the measured cycles (it would take a 20 s
	// stall).
	const ttl = 60 * time.Second
	leader := configureOn(t, srv, "/service", "pg1", ttl)
	replica := configureOn(t, srv, "/service", "pg2", ttl)
	leaderData := []byte(`{"role":"primary","state":"running"}`)
	replicaData := []byte(`{"role":"replica","state":"running"}`)
	if _, err := leader.AcquireLeader(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	for b, data := range map[*etcd3.Backend][]byte{leader: leaderData, replica: replicaData} {
		if err := b.TouchMember(ctxT(t), data); err != nil {
			t.Fatal(err)
		}
	}
	cachedRead(t, srv, leader)
	cachedRead(t, srv, replica)

	const cycles = 20
	run := func(name string, cycle func() error) requests {
		// A progress answer slower than syncWait (a stalled machine) makes
		// that read use a Range and resync the watch: measure again, up to
		// three times, for a window without one.
		for attempt := 1; ; attempt++ {
			start := time.Now()
			before := counts(t, srv)
			for range cycles {
				if err := cycle(); err != nil {
					t.Fatalf("%s cycle: %v", name, err)
				}
			}
			d := counts(t, srv).since(before)
			t.Logf("%s, per cycle over %d cycles in %v: RPCs started %s; messages received %s",
				name, cycles, time.Since(start).Round(time.Millisecond), per(d.started, cycles), per(d.received, cycles))
			if d.started["Range"] != 0 && attempt < 3 {
				continue
			}
			for _, m := range []string{"Range", "Txn", "Put"} {
				if d.started[m] != 0 {
					t.Errorf("%s: %v %s requests in %d cycles, want none", name, d.started[m], m, cycles)
				}
			}
			if w := d.received["Watch"]; w != cycles {
				t.Errorf("%s: %v messages on the watch stream in %d cycles, want one progress request per GetCluster", name, w, cycles)
			}
			return d
		}
	}
	d := run("leader", func() error {
		c, err := leader.GetCluster(ctxT(t))
		if err != nil {
			return err
		}
		if c.Leader == nil || c.Leader.Name != "pg1" || c.Member("pg2") == nil {
			return fmt.Errorf("cluster read %+v", c)
		}
		if err := leader.RenewLeader(ctxT(t)); err != nil {
			return err
		}
		return leader.TouchMember(ctxT(t), leaderData)
	})
	// Each KeepAliveOnce opens one LeaseKeepAlive stream (etcd 3.6 counts
	// two messages received on it, 3.4 one).
	if ka := d.started["LeaseKeepAlive"]; ka != cycles {
		t.Errorf("leader: %v keep-alives in %d cycles, want exactly one per RenewLeader", ka, cycles)
	}
	d = run("replica", func() error {
		c, err := replica.GetCluster(ctxT(t))
		if err != nil {
			return err
		}
		if c.Leader == nil || c.Leader.Name != "pg1" {
			return fmt.Errorf("cluster read %+v", c)
		}
		return replica.TouchMember(ctxT(t), replicaData)
	})
	if ka := d.started["LeaseKeepAlive"]; ka != 0 {
		t.Errorf("replica: %v keep-alives in %d cycles within ttl/3 of its last refresh", ka, cycles)
	}

	// Changed member data is written, once.
	before := counts(t, srv)
	if err := replica.TouchMember(ctxT(t), []byte(`{"role":"replica","state":"streaming"}`)); err != nil {
		t.Fatal(err)
	}
	if n := counts(t, srv).since(before).started["Put"]; n != 1 {
		t.Fatalf("TouchMember with new data sent %v puts, want 1", n)
	}
}

// TestFailedRequestReadsEtcd: after a request to etcd failed, GetCluster
// does not trust the watch but reads etcd, until a request succeeds: a
// primary cut off from etcd's leader must see its reads fail and demote.
func TestFailedRequestReadsEtcd(t *testing.T) {
	t.Parallel()
	srv := ownEtcd(t)
	b := configureOn(t, srv, "/service", "pg1", 10*time.Second)
	if _, err := b.AcquireLeader(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	cachedRead(t, srv, b)
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if err := b.RenewLeader(expired); !errors.Is(err, dcs.ErrUnavailable) {
		t.Fatalf("RenewLeader past its deadline: want ErrUnavailable, got %v", err)
	}
	before := counts(t, srv)
	if _, err := b.GetCluster(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if n := counts(t, srv).since(before).started["Range"]; n != 1 {
		t.Fatalf("GetCluster after a failed request sent %v Range requests, want 1", n)
	}
	// The Range succeeded: the watch is trusted again.
	cachedRead(t, srv, b)
}

// TestCacheResyncsAfterEtcdRestart restarts etcd under a backend: the host
// watch ends with ErrUnavailable, reads go on (from etcd directly while the
// cache is out of sync) and see what was written meanwhile, and once the
// cache is in sync again a foreign write shows at once without a Range.
func TestCacheResyncsAfterEtcdRestart(t *testing.T) {
	t.Parallel()
	srv := ownEtcd(t)
	raw := rawClientOn(t, srv)
	b := configureOn(t, srv, "/service", "pg1", 10*time.Second)
	if err := b.TouchMember(ctxT(t), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	cachedRead(t, srv, b)

	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	watchDone := make(chan error, 1)
	seen := make(chan struct{}, 1000)
	go func() {
		watchDone <- b.Watch(watchCtx, func(dcs.Event) { seen <- struct{}{} })
	}()
	// Write until the watch delivers: it is subscribed.
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; len(seen) == 0; i++ {
		if time.Now().After(deadline) {
			t.Fatal("the watch delivered no event for a write")
		}
		if _, err := raw.Put(ctxT(t), "/service/pg/status", strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // give the watch time to start
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-watchDone:
		if !errors.Is(err, dcs.ErrUnavailable) {
			t.Fatalf("Watch across an etcd restart: want ErrUnavailable, got %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not end when etcd restarted")
	}

	want := []byte(`{"after":"restart"}`)
	if _, err := raw.Put(ctxT(t), "/service/pg/config", string(want)); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		c, err := b.GetCluster(ctxT(t))
		if err == nil && c.Config != nil && bytes.Equal(c.Config.Data, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the restart GetCluster reads %+v, %v", c, err)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	cachedRead(t, srv, b)
	// Served by the resynced cache, another client's write shows at once.
	put, err := raw.Put(ctxT(t), "/service/pg/config", `{"resynced":true}`)
	if err != nil {
		t.Fatal(err)
	}
	c := cachedRead(t, srv, b)
	if c.Config == nil || string(c.Config.Data) != `{"resynced":true}` || c.Config.Version != strconv.FormatInt(put.Header.Revision, 10) {
		t.Fatalf("a write after the resync reads %+v", c.Config)
	}
	// The host can watch again.
	w := startWatcher(t, b)
	if _, err := raw.Put(ctxT(t), "/service/pg/leader", "pg9"); err != nil {
		t.Fatal(err)
	}
	w.wait(t, dcs.Event{Type: dcs.EventPut, Path: "leader"})
}

// watcher collects the events of a Watch running in the background.
type watcher struct {
	events chan dcs.Event
}

func startWatcher(t *testing.T, b dcs.Backend) *watcher {
	t.Helper()
	w := &watcher{events: make(chan dcs.Event, 1000)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- b.Watch(ctx, func(e dcs.Event) { w.events <- e })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	})
	return w
}

// wait waits for an event of the type and path (the version is ignored).
func (w *watcher) wait(t *testing.T, want dcs.Event) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-w.events:
			if e.Type == want.Type && e.Path == want.Path {
				return
			}
		case <-timeout:
			t.Fatalf("no %s event for %s", want.Type, want.Path)
		}
	}
}

// TestReadYourWrites reads right after each write of the same backend: the
// read must show it, with the version the write returned.
func TestReadYourWrites(t *testing.T) {
	t.Parallel()
	ns := uniqueNamespace(t)
	b := newBackend(t, ns, "pg1", testTTL)
	version := ""
	for i := range 30 {
		v, err := b.AcquireLeader(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		c, err := b.GetCluster(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if c.Leader == nil || c.Leader.Name != "pg1" || c.Leader.Version != v {
			t.Fatalf("round %d: after AcquireLeader (version %s) the leader reads %+v", i, v, c.Leader)
		}
		data := []byte(fmt.Sprintf(`{"round":%d}`, i))
		if version, err = b.CompareAndSet(ctxT(t), dcs.KeyConfig, data, version); err != nil {
			t.Fatal(err)
		}
		if c, err = b.GetCluster(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		if c.Config == nil || !bytes.Equal(c.Config.Data, data) || c.Config.Version != version {
			t.Fatalf("round %d: after CompareAndSet (version %s) config reads %+v", i, version, c.Config)
		}
		if err := b.DeleteLeader(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		if c, err = b.GetCluster(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		if c.Leader != nil {
			t.Fatalf("round %d: after DeleteLeader the leader reads %+v", i, c.Leader)
		}
	}
}

// TestForeignWritesSeen reads right after another client's writes, a lease
// revocation included: the read must show them.
func TestForeignWritesSeen(t *testing.T) {
	t.Parallel()
	raw := rawClient(t)
	ns := uniqueNamespace(t)
	prefix := ns + "/pg/"
	b := newBackend(t, ns, "pg1", testTTL)
	if _, err := b.GetCluster(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		lease, err := raw.Grant(ctxT(t), 60)
		if err != nil {
			t.Fatal(err)
		}
		put, err := raw.Put(ctxT(t), prefix+"leader", "pg2", clientv3.WithLease(lease.ID))
		if err != nil {
			t.Fatal(err)
		}
		c, err := b.GetCluster(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if c.Leader == nil || c.Leader.Name != "pg2" || c.Leader.Version != strconv.FormatInt(put.Header.Revision, 10) ||
			c.Leader.Session != strconv.FormatInt(int64(lease.ID), 10) {
			t.Fatalf("round %d: right after another client's write the leader reads %+v", i, c.Leader)
		}
		if _, err := raw.Revoke(ctxT(t), lease.ID); err != nil {
			t.Fatal(err)
		}
		if c, err = b.GetCluster(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		if c.Leader != nil {
			t.Fatalf("round %d: right after the lease was revoked the leader reads %+v", i, c.Leader)
		}
	}
}

// TestTouchMemberAfterLeaseLoss checks that a member key whose lease
// expired, or was revoked, is written again by the next TouchMember with
// the same data.
func TestTouchMemberAfterLeaseLoss(t *testing.T) {
	t.Parallel()
	raw := rawClient(t)
	ns := uniqueNamespace(t)
	key := ns + "/pg/members/pg1"
	const ttl = 2 * time.Second
	b := newBackend(t, ns, "pg1", ttl)
	data := []byte(`{"state":"running"}`)
	if err := b.TouchMember(ctxT(t), data); err != nil {
		t.Fatal(err)
	}
	_, _, _, lease := rawKV(t, raw, key)

	// Expiry: nobody touches the key for longer than its TTL.
	deadline := time.Now().Add(ttl + 3*time.Second)
	for len(mustGet(t, raw, key).Kvs) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("member key did not expire")
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
	if err := b.TouchMember(ctxT(t), data); err != nil {
		t.Fatal(err)
	}
	value, _, _, lease2 := rawKV(t, raw, key)
	if !bytes.Equal(value, data) || lease2 == lease {
		t.Fatalf("after expiry the member key is %q on lease %x (expired lease %x)", value, lease2, lease)
	}

	// Revocation while the lease is fresh (TouchMember would not refresh
	// it): the HA loop reads the cluster first, as here.
	if _, err := raw.Revoke(ctxT(t), clientv3.LeaseID(lease2)); err != nil {
		t.Fatal(err)
	}
	c, err := b.GetCluster(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if c.Member("pg1") != nil {
		t.Fatalf("member key still read after its lease was revoked: %+v", c.Member("pg1"))
	}
	if err := b.TouchMember(ctxT(t), data); err != nil {
		t.Fatal(err)
	}
	value, _, _, lease3 := rawKV(t, raw, key)
	if !bytes.Equal(value, data) || lease3 == lease2 {
		t.Fatalf("after revocation the member key is %q on lease %x (revoked lease %x)", value, lease3, lease2)
	}
}

// TestRenewLeaderRefreshesLease checks that every RenewLeader refreshes the
// lease in etcd, also when it does not rewrite the leader key.
func TestRenewLeaderRefreshesLease(t *testing.T) {
	t.Parallel()
	raw := rawClient(t)
	ns := uniqueNamespace(t)
	key := ns + "/pg/leader"
	const ttl = 6 * time.Second
	b := newBackend(t, ns, "pg1", ttl)
	if _, err := b.AcquireLeader(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := b.RenewLeader(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	_, modRev, _, lease := rawKV(t, raw, key)
	for range 2 {
		time.Sleep(ttl / 2) // let the lease run down by half
		before, err := raw.TimeToLive(ctxT(t), clientv3.LeaseID(lease))
		if err != nil {
			t.Fatal(err)
		}
		if err := b.RenewLeader(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		after, err := raw.TimeToLive(ctxT(t), clientv3.LeaseID(lease))
		if err != nil {
			t.Fatal(err)
		}
		if after.TTL <= before.TTL {
			t.Fatalf("RenewLeader did not refresh the lease: %d s left before, %d s after", before.TTL, after.TTL)
		}
		if _, r, _, l := rawKV(t, raw, key); r != modRev || l != lease {
			t.Fatalf("RenewLeader rewrote its own key: mod_revision %d -> %d, lease %x -> %x", modRev, r, lease, l)
		}
	}
}

// TestReplicaKeepsMemberKey touches the member key often, as a replica's HA
// loop does without RenewLeader, for several TTLs: TouchMember refreshes the
// lease only now and then, and the key must never expire.
func TestReplicaKeepsMemberKey(t *testing.T) {
	t.Parallel()
	raw := rawClient(t)
	ns := uniqueNamespace(t)
	key := ns + "/pg/members/pg2"
	const ttl = 3 * time.Second
	b := newBackend(t, ns, "pg2", ttl)
	data := []byte(`{"role":"replica"}`)
	if err := b.TouchMember(ctxT(t), data); err != nil {
		t.Fatal(err)
	}
	_, _, created, lease := rawKV(t, raw, key)
	end := time.Now().Add(3 * ttl)
	for time.Now().Before(end) {
		time.Sleep(ttl / 6) // a loop_wait well within the timing rule
		if err := b.TouchMember(ctxT(t), data); err != nil {
			t.Fatal(err)
		}
		// A key that expired in between would be written again, with a new
		// create_revision and lease.
		if _, _, c, l := rawKV(t, raw, key); c != created || l != lease {
			t.Fatalf("the member key expired while touched every ttl/6: create_revision %d -> %d, lease %x -> %x", created, c, lease, l)
		}
	}
}
