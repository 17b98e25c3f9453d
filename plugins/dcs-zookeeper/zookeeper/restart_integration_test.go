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

// TestServerRestart crashes and restarts a server of its own within the
// session timeout: calls meanwhile fail with ErrUnavailable within the
// retry timeout; afterwards the same session goes on, so the leader key
// never changed hands, and the open watch still delivers events.
func TestServerRestart(t *testing.T) {
	t.Parallel()
	srv, err := servers.StartZooKeeper(servers.ZooKeeperConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	// Long enough to outlive a JVM restart on a busy machine.
	const ttl = 20 * time.Second
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
	l := startWatch(t, w)
	for i := 0; ; i++ {
		if err := a.Set(ctxT(t), dcs.KeyStatus, []byte(`{}`)); err != nil {
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

	if err := a.RenewLeader(ctxT(t)); err != nil {
		t.Fatalf("RenewLeader after the restart: %v", err)
	}
	after, err := a.GetCluster(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if after.Leader == nil || after.Leader.Session != before.Leader.Session || after.Leader.Version != before.Leader.Version {
		t.Fatalf("leader before the restart %+v, after %+v: want the same znode", before.Leader, after.Leader)
	}
	if err := a.Set(ctxT(t), dcs.KeyHistory, []byte(`[]`)); err != nil {
		t.Fatal(err)
	}
	l.wait(t, dcs.EventPut, "history", "0")
}
