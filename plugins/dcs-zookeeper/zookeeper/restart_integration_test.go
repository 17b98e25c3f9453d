//go:build integration

package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
	"github.com/custos-ha/custos/testkit/servers"
)

// TestServerRestart crashes and restarts a server of its own: calls
// meanwhile fail with ErrUnavailable within the retry timeout; when the
// leader renews within its ttl the same session goes on, so the leader key
// never changed hands, and when the server came back too late the plugin
// has closed the session and the key is made anew; the open watch still
// delivers events.
func TestServerRestart(t *testing.T) {
	t.Parallel()
	srv, err := servers.StartZooKeeper(servers.ZooKeeperConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	// Long enough to outlive a JVM restart on a busy machine.
	const ttl = 40 * time.Second
	scope := randomScope(t, "restart")
	bind := func(member string, retry time.Duration) *Backend {
		b := New(testLogger(member))
		t.Cleanup(func() { _ = b.Close(context.Background()) })
		if err := b.Configure(ctxT(t), dcs.ConfigureRequest{
			Scope: scope, Member: member, TTL: ttl, RetryTimeout: retry,
			Config: []byte(fmt.Sprintf(`{"hosts": [%q]}`, srv.Addr)),
		}); err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, w, impatient := bind("a", 5*time.Second), bind("w", 5*time.Second), bind("i", 300*time.Millisecond)
	if _, err := a.AcquireLeader(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := a.TouchMember(ctxT(t), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	before, err := a.GetCluster(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	l := armedWatch(t, a, w)
	if err := a.RenewLeader(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	renewed := time.Now()
	srv.Kill()
	start := time.Now()
	if _, err := impatient.GetCluster(context.Background()); !errors.Is(err, dcs.ErrUnavailable) {
		t.Fatalf("GetCluster with the server down: want ErrUnavailable, got %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("GetCluster with the server down took %v, retry_timeout is 300ms", took)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}

	// The agent renews every loop until it succeeds; a JVM that starts
	// slowly on a busy machine may need several tries.
	var renewErr error
	deadline := time.Now().Add(2 * ttl)
	for {
		if renewErr = a.RenewLeader(ctxT(t)); renewErr == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if renewErr != nil {
		t.Fatalf("RenewLeader after the restart: %v", renewErr)
	}
	gap := time.Since(renewed)
	after, err := a.GetCluster(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if after.Leader == nil {
		t.Fatal("no leader key after a successful RenewLeader")
	}
	same := after.Leader.Session == before.Leader.Session && after.Leader.Version == before.Leader.Version
	switch {
	case gap < ttl && !same:
		t.Fatalf("renewed %v after the last renewal, within ttl %v: leader before the restart %+v, after %+v: want the same znode",
			gap, ttl, before.Leader, after.Leader)
	case gap >= ttl+time.Second && same:
		// Past the ttl the plugin closes its session itself, so the old
		// znode must be gone even though the server would have kept it.
		t.Fatalf("renewed %v after the last renewal, past ttl %v: the old session's znode %+v lives on", gap, ttl, after.Leader)
	case gap >= ttl:
		t.Logf("the server needed %v to come back, past ttl %v: checked that the session was closed", gap, ttl)
	}
	if err := l.broken(); err != nil {
		// A watch may break when the store stays away longer than the
		// retry timeout; the agent then reads and watches again.
		if !errors.Is(err, dcs.ErrUnavailable) {
			t.Fatalf("the watch broke with %v, want ErrUnavailable", err)
		}
		t.Logf("the watch broke while the server was down (%v): watching again", err)
		l = armedWatch(t, a, w)
	}
	if err := a.Set(ctxT(t), dcs.KeyHistory, []byte(`[]`)); err != nil {
		t.Fatal(err)
	}
	l.wait(t, dcs.EventPut, "history", "0")
}

// armedWatch starts a watch on w and returns once a write by a came
// through it.
func armedWatch(t *testing.T, a, w *Backend) *eventLog {
	t.Helper()
	l := startWatch(t, w)
	for i := 0; ; i++ {
		if err := a.Set(ctxT(t), dcs.KeyStatus, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		l.mu.Lock()
		n := len(l.events)
		l.events = nil
		l.mu.Unlock()
		if n > 0 {
			return l
		}
		if i > 50 {
			t.Fatal("the watch delivered no event for a write")
		}
		time.Sleep(100 * time.Millisecond) // give the watch time to start
	}
}
