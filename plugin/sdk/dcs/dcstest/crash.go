package dcstest

import (
	"testing"
	"time"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
	"github.com/custos-ha/custos/plugin/sdk/sdktest"
)

// Binary describes a built DCS plugin for RunBinary and RunCrash.
type Binary struct {
	// Path is the built plugin binary.
	Path string
	// Config is the JSON of the plugin's configuration section that points
	// at the store.
	Config []byte
	// Namespace, when set, is used instead of a fresh one per test.
	Namespace string
	// Restart adds the store's own checks to the restart test: what only
	// the store's own client can see (the lease or session a key lives on,
	// a lock's acquire time). Every field is optional.
	Restart RestartChecks
}

// Place is where one test's cluster lives: the namespace and scope its
// clients are configured with.
type Place struct {
	Namespace string
	Scope     string
}

// RestartChecks are store-specific checks of RunCrash's restart test,
// called in this order.
type RestartChecks struct {
	// Killed runs while the first process holds the leader key and its
	// member key, just before the process is killed.
	Killed func(t *testing.T, p Place)
	// Renewed runs once a new process of the same member has renewed the
	// leader key the killed one held.
	Renewed func(t *testing.T, p Place)
	// Expired runs once the killed process's keys have expired, the new
	// process still renewing the leader key.
	Expired func(t *testing.T, p Place)
}

// RunBinary runs the kit through a built plugin binary over real go-plugin
// handshakes: RunConformance with every client a process of its own, as
// every agent runs its own plugin process (subtest Conformance), then
// RunCrash (subtest Crash). Both run in parallel.
func RunBinary(t *testing.T, b Binary) {
	t.Run("Conformance", func(t *testing.T) {
		t.Parallel()
		target := BinaryTarget(t, b.Path, b.Config)
		target.Namespace = b.Namespace
		RunConformance(t, target)
	})
	t.Run("Crash", func(t *testing.T) {
		t.Parallel()
		RunCrash(t, b)
	})
}

// RunCrash checks what the agent relies on when a plugin process dies
// (a crash, the OOM killer, a kill after missed deadlines), with SIGKILL so
// that none of the plugin's clean-up runs:
//
//   - KilledKeysExpire: the leader and member keys of the killed process go
//     about one TTL after their last renewal (plus the expiry delay the
//     plugin announces), not before half of it, on another client's reads,
//     and that client's watch hears the leader key go;
//   - RestartRenews: a new process of the same member, configured again as
//     the agent does after a restart, renews the leader key the killed
//     process held, so a plugin crash costs no leadership; the key lives on
//     past the killed process's expiry, on the new process's session when
//     the store has sessions, while the member key only the killed process
//     wrote goes with it.
//
// Subtests run in parallel, each in a cluster scope of its own.
func RunCrash(t *testing.T, b Binary) {
	target := BinaryTarget(t, b.Path, b.Config)
	target.Namespace = b.Namespace
	c := &crashKit{kit: newKit(t, target), bin: b}
	runParallel(t, []subtest{
		{"KilledKeysExpire", c.testKilledKeysExpire},
		{"RestartRenews", c.testRestartRenews},
	})
}

type crashKit struct {
	*kit
	bin Binary
}

// start starts a process of the plugin, which the test may kill.
func (c *crashKit) start(t *testing.T) (*sdktest.Process, dcs.Backend) {
	t.Helper()
	proc := sdktest.Start(t, c.bin.Path, sdk.KindDCS, dcs.PluginName, &dcs.Plugin{})
	return proc, proc.Service.(dcs.Backend)
}

// holdKeys makes b the leader and writes its member key.
func holdKeys(t *testing.T, b dcs.Backend, member []byte) {
	t.Helper()
	if _, err := b.AcquireLeader(ctxT(t)); err != nil {
		t.Fatalf("AcquireLeader: %v", err)
	}
	if err := b.TouchMember(ctxT(t), member); err != nil {
		t.Fatalf("TouchMember: %v", err)
	}
}

func (c *crashKit) testKilledKeysExpire(t *testing.T) {
	cl := c.newCluster(t)
	watcher, poller := cl.client("w"), cl.client("p")
	w := startWatch(t, watcher)
	proc, a := c.start(t)
	cl.configure(a, "a")
	w.waitWatching(t, a)
	holdKeys(t, a, []byte(`{"state":"running"}`))
	last := time.Now()
	proc.Kill(t)
	gone := waitGone(t, poller, last.Add(c.expiryDeadline()))
	if early := c.ttl / 2; gone.Sub(last) < early {
		t.Fatalf("keys of the killed process gone %v after their last renewal, before half their TTL %v", gone.Sub(last), c.ttl)
	}
	// The event may come before the poller notices; it must not come later
	// than watchLatency after the key was seen gone.
	at := w.waitEvent(t, dcs.EventDelete, dcs.LeaderPath, last, time.Until(gone.Add(watchLatency)))
	t.Logf("keys of the killed process gone %v after their last renewal (ttl %v), leader delete event after %v",
		gone.Sub(last).Round(10*time.Millisecond), c.ttl, at.Sub(last).Round(10*time.Millisecond))
}

func (c *crashKit) testRestartRenews(t *testing.T) {
	cl := c.newCluster(t)
	place := Place{Namespace: cl.namespace, Scope: cl.scope}
	observer := cl.client("obs")
	proc, first := c.start(t)
	cl.configure(first, "a")
	holdKeys(t, first, []byte(`{"process":"first"}`))
	before := read(t, observer)
	if leaderName(before) != "a" || before.Member("a") == nil {
		t.Fatalf("before the kill: leader %+v, member a %+v", before.Leader, before.Member("a"))
	}
	if c.bin.Restart.Killed != nil {
		c.bin.Restart.Killed(t, place)
	}
	last := time.Now()
	proc.Kill(t)

	// The agent starts a new process and configures it again.
	second := cl.client("a")
	if err := second.RenewLeader(ctxT(t)); err != nil {
		t.Fatalf("renewing the leader key held before the crash: %v", err)
	}
	renewed := read(t, observer)
	if leaderName(renewed) != "a" {
		t.Fatalf("after the new process renewed: leader %+v", renewed.Leader)
	}
	session := renewed.Leader.Session
	if before.Leader.Session != "" && session == before.Leader.Session {
		t.Fatalf("the renewed leader key is still on the killed process's session %s: it would expire with it", session)
	}
	if c.bin.Restart.Renewed != nil {
		c.bin.Restart.Renewed(t, place)
	}

	// Until the killed process's keys are certainly gone, and after, the
	// leader key lives on, renewed as the HA loop would.
	end := last.Add(c.expiryDeadline())
	nextRenew := time.Now().Add(c.ttl / 3)
	for time.Now().Before(end) {
		if time.Now().After(nextRenew) {
			if err := second.RenewLeader(ctxT(t)); err != nil {
				t.Fatalf("RenewLeader: %v", err)
			}
			nextRenew = time.Now().Add(c.ttl / 3)
		}
		if got := read(t, observer); leaderName(got) != "a" {
			t.Fatalf("%v after the kill: the leader key renewed by the new process reads %+v", time.Since(last), got.Leader)
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
	after := read(t, observer)
	switch {
	case leaderName(after) != "a":
		t.Fatalf("after the killed process's keys expired: leader %+v", after.Leader)
	case after.Leader.Session != session:
		t.Fatalf("renewals moved the leader key from session %s to %s", session, after.Leader.Session)
	case after.Member("a") != nil:
		t.Fatalf("the member key only the killed process wrote is still there %v after its last renewal: %s", time.Since(last), after.Member("a").Data)
	}
	if c.bin.Restart.Expired != nil {
		c.bin.Restart.Expired(t, place)
	}
}
