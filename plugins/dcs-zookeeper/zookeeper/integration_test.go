//go:build integration

package zookeeper

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
	"github.com/custos-ha/custos/plugin/sdk/dcs/dcstest"
)

const testTTL = 3 * time.Second

func testConfig() []byte { return []byte(fmt.Sprintf(`{"hosts": [%q]}`, zkServer.Addr)) }

func testLogger(name string) hclog.Logger {
	level := hclog.LevelFromString(os.Getenv("CUSTOS_TEST_LOG_LEVEL"))
	if level == hclog.NoLevel {
		level = hclog.Warn
	}
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: level, Output: os.Stderr})
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func randomScope(t *testing.T, prefix string) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return prefix + "-" + hex.EncodeToString(b[:])
}

// configured returns a backend bound to scope under Patroni's default
// namespace as member; it is closed when the test ends.
func configured(t *testing.T, scope, member string) *Backend {
	t.Helper()
	b := New(testLogger(member))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("closing %s: %v", member, err)
		}
	})
	err := b.Configure(ctxT(t), dcs.ConfigureRequest{
		Scope: scope, Member: member, TTL: testTTL, RetryTimeout: time.Second, Config: testConfig(),
	})
	if err != nil {
		t.Fatalf("configuring %s: %v", member, err)
	}
	return b
}

// rawConn is a plain client of the test server, as Patroni or zkCli would be.
func rawConn(t *testing.T) *zk.Conn {
	t.Helper()
	conn, events, err := zk.Connect([]string{zkServer.Addr}, 10*time.Second,
		zk.WithLogger(zkLogger{testLogger("raw")}), zk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		for range events {
		}
	})
	deadline := time.After(10 * time.Second)
	for conn.State() != zk.StateHasSession {
		select {
		case <-events:
		case <-deadline:
			t.Fatal("raw zookeeper connection did not get a session")
		}
	}
	return conn
}

func TestConformance(t *testing.T) {
	dcstest.RunConformance(t, dcstest.Target{
		New:    func(t *testing.T) dcs.Backend { return New(testLogger(t.Name())) },
		Config: testConfig(),
	})
}

// TestPatroniLayout checks the znodes a Patroni node or zkCli sees: exact
// paths under /service/<scope>, byte-exact values, leader and member
// ephemeral on one session, versions = stat.version; and that keys a
// Patroni node wrote read back right.
func TestPatroniLayout(t *testing.T) {
	scope := randomScope(t, "layout")
	a := configured(t, scope, "pg1")
	raw := rawConn(t)
	base := "/service/" + scope

	const member = `{"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"http://127.0.0.1:8008/patroni","state":"running","role":"primary","version":"4.1.4","xlog_location":25166136,"timeline":1}`
	values := map[dcs.Key]string{
		dcs.KeyInitialize: "7268616322854375442",
		dcs.KeyConfig:     `{"ttl":30,"loop_wait":10,"retry_timeout":10,"maximum_lag_on_failover":1048576,"postgresql":{"use_pg_rewind":true}}`,
		dcs.KeyFailover:   `{"leader":"pg1","member":"pg2","scheduled_at":"2030-01-01T00:00:00+00:00"}`,
		dcs.KeySync:       `{"leader":"pg1","quorum":0,"sync_standby":"pg2"}`,
		dcs.KeyHistory:    `[[1,25165984,"no recovery target specified","2024-01-01T00:00:00+00:00","pg1"]]`,
		dcs.KeyStatus:     `{"optime":25166136,"slots":{"pg2":25166136}}`,
		dcs.KeyFailsafe:   `{"pg1":"http://127.0.0.1:8008/patroni","pg2":"http://127.0.0.1:8009/patroni"}`,
	}

	if v, err := a.AcquireLeader(ctxT(t)); err != nil || v != "0" {
		t.Fatalf("AcquireLeader: %q, %v", v, err)
	}
	if err := a.TouchMember(ctxT(t), []byte(member)); err != nil {
		t.Fatal(err)
	}
	// The bootstrap race writes "" first, then the system identifier.
	v, err := a.CompareAndSet(ctxT(t), dcs.KeyInitialize, []byte(""), "")
	if err != nil || v != "0" {
		t.Fatalf("initialize race: %q, %v", v, err)
	}
	if v, err = a.CompareAndSet(ctxT(t), dcs.KeyInitialize, []byte(values[dcs.KeyInitialize]), v); err != nil || v != "1" {
		t.Fatalf("writing the system identifier: %q, %v", v, err)
	}
	for _, k := range []dcs.Key{dcs.KeyConfig, dcs.KeyFailover, dcs.KeySync} {
		if _, err := a.CompareAndSet(ctxT(t), k, []byte(values[k]), ""); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
	}
	for _, k := range []dcs.Key{dcs.KeyHistory, dcs.KeyStatus, dcs.KeyFailsafe} {
		if err := a.Set(ctxT(t), k, []byte(values[k])); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
	}

	children, _, err := raw.Children(base)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(children)
	want := []string{"config", "failover", "failsafe", "history", "initialize", "leader", "members", "status", "sync"}
	if !slices.Equal(children, want) {
		t.Fatalf("children of %s: %v, want %v", base, children, want)
	}
	if members, _, err := raw.Children(base + "/members"); err != nil || !slices.Equal(members, []string{"pg1"}) {
		t.Fatalf("children of %s/members: %v, %v", base, members, err)
	}
	cluster, err := a.GetCluster(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range values {
		data, st, err := raw.Get(base + "/" + string(k))
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if string(data) != want {
			t.Errorf("%s holds %q, want %q", k, data, want)
		}
		if st.EphemeralOwner != 0 {
			t.Errorf("%s is ephemeral (owner 0x%x), want persistent", k, st.EphemeralOwner)
		}
		if got := cluster.Get(k); got == nil || got.Version != strconv.Itoa(int(st.Version)) || string(got.Data) != want {
			t.Errorf("GetCluster %s = %+v, want version %d", k, got, st.Version)
		}
	}
	leaderData, leaderStat, err := raw.Get(base + "/leader")
	if err != nil {
		t.Fatal(err)
	}
	memberData, memberStat, err := raw.Get(base + "/members/pg1")
	if err != nil {
		t.Fatal(err)
	}
	if string(leaderData) != "pg1" || string(memberData) != member {
		t.Fatalf("leader holds %q, member holds %q", leaderData, memberData)
	}
	if leaderStat.EphemeralOwner == 0 || leaderStat.EphemeralOwner != memberStat.EphemeralOwner {
		t.Fatalf("leader owner 0x%x, member owner 0x%x: want the same session", leaderStat.EphemeralOwner, memberStat.EphemeralOwner)
	}
	session := fmt.Sprintf("0x%x", leaderStat.EphemeralOwner)
	if cluster.Leader == nil || cluster.Leader.Name != "pg1" || cluster.Leader.Session != session || cluster.Leader.Version != "0" {
		t.Fatalf("GetCluster leader = %+v, want pg1 on %s at version 0", cluster.Leader, session)
	}
	if m := cluster.Member("pg1"); m == nil || string(m.Data) != member || m.Session != session || m.Version != strconv.Itoa(int(memberStat.Version)) {
		t.Fatalf("GetCluster member pg1 = %+v", m)
	}

	// Keys written by a Patroni node (here: the raw client) read back, and
	// this member does not touch a leader key that is not its own.
	rawSession := fmt.Sprintf("0x%x", raw.SessionID())
	if _, err := raw.Create(base+"/members/pg2", []byte(`{"state":"running","role":"replica"}`), zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if err := raw.Delete(base+"/leader", -1); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Create(base+"/leader", []byte("pg2"), zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	cluster, err = a.GetCluster(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if cluster.Leader == nil || cluster.Leader.Name != "pg2" || cluster.Leader.Session != rawSession {
		t.Fatalf("leader written by Patroni reads %+v, want pg2 on %s", cluster.Leader, rawSession)
	}
	if m := cluster.Member("pg2"); m == nil || m.Session != rawSession || len(cluster.Members) != 2 {
		t.Fatalf("members read %+v", cluster.Members)
	}
	if err := a.RenewLeader(ctxT(t)); !errors.Is(err, dcs.ErrVersionMismatch) {
		t.Fatalf("renewing pg2's leader key: want ErrVersionMismatch, got %v", err)
	}
	if err := a.DeleteLeader(ctxT(t)); !errors.Is(err, dcs.ErrVersionMismatch) {
		t.Fatalf("deleting pg2's leader key: want ErrVersionMismatch, got %v", err)
	}
	// Deleting sync removes the znode (Patroni would write "{}").
	syncVersion := cluster.Sync.Version
	if err := a.CompareAndDelete(ctxT(t), dcs.KeySync, syncVersion); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := raw.Exists(base + "/sync"); err != nil || ok {
		t.Fatalf("sync exists=%v (%v) after CompareAndDelete", ok, err)
	}
	if err := a.DeleteCluster(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := raw.Exists(base); err != nil || ok {
		t.Fatalf("%s exists=%v (%v) after DeleteCluster", base, ok, err)
	}
}

// TestKeysMoveFromOldSession plays a restarted plugin in process: a second
// client of the same member renews the leader key and touches the member
// key the first one left, and both move to its session, so that the first
// session ending does not take them along.
func TestKeysMoveFromOldSession(t *testing.T) {
	scope := randomScope(t, "move")
	base := "/service/" + scope
	raw := rawConn(t)
	old := New(testLogger("old"))
	if err := old.Configure(ctxT(t), dcs.ConfigureRequest{Scope: scope, Member: "a", TTL: testTTL, RetryTimeout: time.Second, Config: testConfig()}); err != nil {
		t.Fatal(err)
	}
	if _, err := old.AcquireLeader(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := old.TouchMember(ctxT(t), []byte(`{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	_, oldStat, err := raw.Get(base + "/leader")
	if err != nil {
		t.Fatal(err)
	}

	a := configured(t, scope, "a")
	if err := a.RenewLeader(ctxT(t)); err != nil {
		t.Fatalf("renewing a leader key left by another session of this member: %v", err)
	}
	if err := a.TouchMember(ctxT(t), []byte(`{"v":2}`)); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		c, err := a.GetCluster(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		_, lst, err := raw.Get(base + "/leader")
		if err != nil {
			t.Fatalf("%s: leader: %v", when, err)
		}
		data, mst, err := raw.Get(base + "/members/a")
		if err != nil {
			t.Fatalf("%s: member: %v", when, err)
		}
		if lst.EphemeralOwner == oldStat.EphemeralOwner || lst.EphemeralOwner != mst.EphemeralOwner || string(data) != `{"v":2}` {
			t.Fatalf("%s: leader owner 0x%x, member owner 0x%x (%s), old session 0x%x", when, lst.EphemeralOwner, mst.EphemeralOwner, data, oldStat.EphemeralOwner)
		}
		if c.Leader == nil || c.Leader.Session != fmt.Sprintf("0x%x", lst.EphemeralOwner) {
			t.Fatalf("%s: GetCluster leader %+v", when, c.Leader)
		}
	}
	check("after the move")
	if err := old.Close(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	check("after the old session closed")

	// Another member taking the key over is not undone by a renewal.
	b := configured(t, scope, "b")
	if err := b.TakeLeader(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := a.RenewLeader(ctxT(t)); !errors.Is(err, dcs.ErrVersionMismatch) {
		t.Fatalf("renewing after b took the key: want ErrVersionMismatch, got %v", err)
	}
	if data, st, err := raw.Get(base + "/leader"); err != nil || string(data) != "b" || st.EphemeralOwner == 0 {
		t.Fatalf("leader after TakeLeader: %q %+v %v", data, st, err)
	}
}

// eventLog records a Watch's events.
type eventLog struct {
	mu     sync.Mutex
	events []dcs.Event
	err    error         // what Watch returned
	done   chan struct{} // closed when Watch returned
}

func startWatch(t *testing.T, b dcs.Backend) *eventLog {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &eventLog{done: make(chan struct{})}
	go func() {
		err := b.Watch(ctx, func(e dcs.Event) {
			l.mu.Lock()
			l.events = append(l.events, e)
			l.mu.Unlock()
		})
		l.mu.Lock()
		l.err = err
		l.mu.Unlock()
		close(l.done)
	}()
	t.Cleanup(func() {
		select {
		case <-l.done:
			// It ended on its own: with an error, the caller checked it.
			if l.err == nil {
				t.Error("Watch returned nil before its context was cancelled")
			}
			return
		default:
		}
		cancel()
		select {
		case <-l.done:
			if l.err != nil {
				t.Errorf("Watch returned %v after its context was cancelled, want nil", l.err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Watch did not return after its context was cancelled")
		}
	})
	return l
}

// broken returns what Watch returned, nil while it runs.
func (l *eventLog) broken() error {
	select {
	case <-l.done:
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.err == nil {
			return errors.New("Watch returned nil before its context was cancelled")
		}
		return l.err
	default:
		return nil
	}
}

// wait waits for an event with the type, path and (when not "") version
// and removes it from the log.
func (l *eventLog) wait(t *testing.T, typ dcs.EventType, path, version string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		for i, e := range l.events {
			if e.Type == typ && e.Path == path && (version == "" || e.Version == version) {
				l.events = slices.Delete(l.events, i, i+1)
				l.mu.Unlock()
				return
			}
		}
		l.mu.Unlock()
		if err := l.broken(); err != nil {
			t.Fatalf("watch ended waiting for %s %s: %v", typ, path, err)
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t.Fatalf("no %s %s (version %q) event; pending: %+v", typ, path, version, l.events)
}

// TestWatchEvents checks the events of every kind of key, and that the
// watch survives the whole cluster being deleted and created again.
func TestWatchEvents(t *testing.T) {
	scope := randomScope(t, "watch")
	a, w := configured(t, scope, "a"), configured(t, scope, "w")
	if err := a.Set(ctxT(t), dcs.KeyConfig, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	l := startWatch(t, w)
	// Wait until the watch is armed: a write must come through.
	for i := 0; ; i++ {
		if err := a.Set(ctxT(t), dcs.KeyStatus, []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
		l.mu.Lock()
		n := len(l.events)
		l.mu.Unlock()
		if n > 0 {
			break
		}
		if i > 50 {
			t.Fatal("the watch delivered no event for a write")
		}
		time.Sleep(100 * time.Millisecond) // give the watch time to start
	}

	v, err := a.CompareAndSet(ctxT(t), dcs.KeyConfig, []byte(`{"ttl":30}`), "0")
	if err != nil {
		t.Fatal(err)
	}
	l.wait(t, dcs.EventPut, "config", v)
	if _, err := a.AcquireLeader(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	l.wait(t, dcs.EventPut, "leader", "0")
	if err := a.TouchMember(ctxT(t), []byte(`{"state":"running"}`)); err != nil {
		t.Fatal(err)
	}
	l.wait(t, dcs.EventPut, "members/a", "0")
	if err := a.TouchMember(ctxT(t), []byte(`{"state":"stopped"}`)); err != nil {
		t.Fatal(err)
	}
	l.wait(t, dcs.EventPut, "members/a", "1")
	sv, err := a.CompareAndSet(ctxT(t), dcs.KeySync, []byte(`{"leader":"a"}`), "")
	if err != nil {
		t.Fatal(err)
	}
	l.wait(t, dcs.EventPut, "sync", sv)
	if err := a.CompareAndDelete(ctxT(t), dcs.KeySync, sv); err != nil {
		t.Fatal(err)
	}
	l.wait(t, dcs.EventDelete, "sync", "")
	if err := a.DeleteCluster(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"leader", "members/a", "config", "status"} {
		l.wait(t, dcs.EventDelete, p, "")
	}
	// The cluster comes back: the watch, now on the absent prefix, sees it.
	if err := a.Set(ctxT(t), dcs.KeyHistory, []byte(`[]`)); err != nil {
		t.Fatal(err)
	}
	l.wait(t, dcs.EventPut, "history", "0")
	if err := a.TouchMember(ctxT(t), []byte(`{"state":"running"}`)); err != nil {
		t.Fatal(err)
	}
	l.wait(t, dcs.EventPut, "members/a", "0")
}
