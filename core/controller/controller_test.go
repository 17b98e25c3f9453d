package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/config"
	"github.com/custos-ha/custos/core/dcs"
	"github.com/custos-ha/custos/core/ha"
	sdkdcs "github.com/custos-ha/custos/plugin/sdk/dcs"
	"github.com/custos-ha/custos/plugin/sdk/dcs/dcstest"
)

// fakePG is a PostgreSQL in memory: enough state for the HA flows.
type fakePG struct {
	mu sync.Mutex
	// hangFastStop and hangSlots make a fast stop and SyncSlots block
	// until their context ends, as on a stalled disk; stoppedAt and
	// stopMode record the stop that brought the server down.
	hangFastStop bool
	hangSlots    bool
	// promoteGate, when set, holds a promotion until it is closed;
	// promoting says one is under way.
	promoteGate chan struct{}
	promoting   bool
	stoppedAt   time.Time
	stopMode    string
	data        bool
	running     bool
	recovery    bool
	timeline    int
	lsn         int64
	upstream    string
	control     string
	starts      int
	failStart   bool
	exited      chan struct{} // closed when the current postmaster exits
}

func newFakePG() *fakePG { return &fakePG{timeline: 1} }

func (f *fakePG) Observe(context.Context) Observation {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := ha.Postgres{DataDir: ha.DataDirEmpty}
	if f.data {
		o = ha.Postgres{DataDir: ha.DataDirInitialized, SysID: "7001", ControlState: f.control, ControlTimeline: f.timeline,
			Running: f.running, Ready: f.running, InRecovery: f.recovery, Timeline: f.timeline, LSN: f.lsn, Upstream: f.upstream}
	}
	return Observation{HA: o}
}
func (f *fakePG) Exited() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.exited
}
func (f *fakePG) Bootstrap(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.data, f.running, f.recovery, f.lsn, f.control = true, true, false, 100, ha.ControlInProduction
	f.exited = make(chan struct{})
	return nil
}
func (f *fakePG) CreateReplica(context.Context, *cluster.Member) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.data, f.control = true, ha.ControlInArchiveRecovery
	return nil
}
func (f *fakePG) Start(_ context.Context, asPrimary bool, upstream *cluster.Member) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.starts++
	if f.failStart {
		return errors.New("could not start")
	}
	f.running, f.recovery = true, !asPrimary
	f.exited = make(chan struct{})
	f.upstream = ""
	if upstream != nil {
		f.upstream = upstream.Name
	}
	return nil
}
func (f *fakePG) Stop(ctx context.Context, mode string) error {
	f.mu.Lock()
	hang := f.hangFastStop && mode == ha.StopFast && f.running
	f.mu.Unlock()
	if hang {
		<-ctx.Done()
		return fmt.Errorf("stopping postgres: %w", ctx.Err())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.running {
		f.stoppedAt, f.stopMode = time.Now(), mode
		close(f.exited)
		if mode != ha.StopImmediate {
			// A clean stop leaves pg_control saying so.
			f.control = ha.ControlShutDown
			if f.recovery {
				f.control = ha.ControlShutDownInRecovery
			}
		}
	}
	f.running = false
	return nil
}
func (f *fakePG) Promote(ctx context.Context) error {
	f.mu.Lock()
	gate := f.promoteGate
	f.promoting = true
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.promoting = false
	f.recovery = false
	f.timeline++
	return nil
}
func (f *fakePG) Follow(_ context.Context, upstream *cluster.Member) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.upstream = ""
	if upstream != nil {
		f.upstream = upstream.Name
	}
	return false, nil
}
func (f *fakePG) Rewind(context.Context, cluster.Member) error { return nil }
func (f *fakePG) Checkpoint(context.Context) error             { return nil }
func (f *fakePG) SetSyncStandbyNames(context.Context, *string) (bool, error) {
	return true, nil
}
func (f *fakePG) RemoveDataDir(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.data = false
	return nil
}
func (f *fakePG) SyncSlots(ctx context.Context, _ cluster.SlotPlan) error {
	f.mu.Lock()
	hang := f.hangSlots
	f.mu.Unlock()
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

// stopped returns when and how the server was stopped; zero while it runs.
func (f *fakePG) stopped() (time.Time, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.running {
		return time.Time{}, ""
	}
	return f.stoppedAt, f.stopMode
}
func (f *fakePG) History(context.Context, int) (cluster.History, error) {
	return cluster.History{{Timeline: 1, LSN: 100, Reason: "no recovery target specified"}}, nil
}

// crash kills the fake postmaster.
func (f *fakePG) crash() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running = false
	close(f.exited)
}

// fakePeers answers for the fake PostgreSQLs by member name.
type fakePeers map[string]*fakePG

func (p fakePeers) Status(_ context.Context, m cluster.Member) (ha.Peer, error) {
	f, ok := p[m.Name]
	if !ok {
		return ha.Peer{}, errors.New("unreachable")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.running {
		return ha.Peer{}, errors.New("not running")
	}
	return ha.Peer{Name: m.Name, Reachable: true, Running: true, Primary: !f.recovery, LSN: f.lsn, FailoverPriority: 1}, nil
}

func (fakePeers) Failsafe(context.Context, string, string, cluster.Member) error { return nil }

type noPeers struct{}

func (noPeers) Failsafe(context.Context, string, string, cluster.Member) error {
	return errors.New("unreachable")
}

func (noPeers) Status(context.Context, cluster.Member) (ha.Peer, error) {
	return ha.Peer{}, errors.New("unreachable")
}

func newController(t *testing.T, mem *dcstest.MemoryStore, name string, pg Local) *Controller {
	return newControllerWithPeers(t, mem, name, pg, noPeers{})
}

func newControllerWithPeers(t *testing.T, mem *dcstest.MemoryStore, name string, pg Local, peers Peers) *Controller {
	t.Helper()
	b := mem.NewBackend()
	if err := b.Configure(context.Background(), sdkdcs.ConfigureRequest{Scope: "demo", Member: name, TTL: 30 * time.Second}); err != nil {
		t.Fatal(err)
	}
	dyn := config.DefaultDynamic()
	dyn.LoopWait = 1
	store := dcs.New(b, hclog.NewNullLogger(), 5*time.Second)
	return New(Options{Name: name, Scope: "demo", ConnURL: "postgres://127.0.0.1:5432/postgres", APIURL: "http://127.0.0.1:8008/patroni", Version: "test", Bootstrap: dyn},
		store, pg, peers, hclog.NewNullLogger())
}

// run runs the controller until the returned stop is called.
func run(c *Controller) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	return func() { cancel(); <-done }
}

// eventually polls cond in virtual time.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 600; i++ {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond) // virtual time inside the bubble
	}
	t.Fatalf("never happened: %s", what)
}

func read(t *testing.T, mem *dcstest.MemoryStore) *cluster.Cluster {
	b := mem.NewBackend()
	if err := b.Configure(context.Background(), sdkdcs.ConfigureRequest{Scope: "demo", Member: "reader", TTL: time.Second}); err != nil {
		t.Fatal(err)
	}
	raw, err := b.GetCluster(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c, _ := cluster.FromDCS(raw)
	return c
}

func TestBootstrapCloneAndFailover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := dcstest.NewMemoryStore()
		defer mem.Stop()
		pg1, pg2 := newFakePG(), newFakePG()
		c1 := newController(t, mem, "pg1", pg1)
		stop1 := run(c1)
		eventually(t, "pg1 bootstraps and leads", func() bool {
			c := read(t, mem)
			return c.LeaderName() == "pg1" && c.SysID() == "7001" && c.Config != nil && c.Member("pg1") != nil && c.Member("pg1").State == "running"
		})
		c2 := newController(t, mem, "pg2", pg2)
		defer run(c2)()
		eventually(t, "pg2 clones and follows pg1", func() bool {
			m := read(t, mem).Member("pg2")
			return m != nil && m.State == "running" && m.Role == cluster.RoleReplica && c2.State().Observation.HA.Upstream == "pg1"
		})

		// The primary's postmaster dies: restarted in place, the key kept.
		starts := pg1.starts
		pg1.crash()
		eventually(t, "pg1 restarted in place", func() bool {
			pg1.mu.Lock()
			defer pg1.mu.Unlock()
			return pg1.starts > starts && pg1.running && !pg1.recovery
		})
		if l := read(t, mem).LeaderName(); l != "pg1" {
			t.Fatalf("leader after the in-place restart: %q", l)
		}

		// pg1's agent stops: PostgreSQL stopped, key released, pg2 promoted.
		stop1()
		eventually(t, "pg2 promoted after pg1's shutdown", func() bool {
			c := read(t, mem)
			pg2.mu.Lock()
			defer pg2.mu.Unlock()
			return c.LeaderName() == "pg2" && !pg2.recovery && pg2.running
		})
		if pg1.running {
			t.Fatal("pg1's PostgreSQL still runs after its agent stopped")
		}
		eventually(t, "history published for timeline 2", func() bool { return len(read(t, mem).History) == 1 })
	})
}

func TestMalformedValuesPublished(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := dcstest.NewMemoryStore()
		defer mem.Stop()
		c := newController(t, mem, "pg1", newFakePG())
		defer run(c)()
		eventually(t, "pg1 leads", func() bool { return read(t, mem).LeaderName() == "pg1" })

		bogus := mem.NewBackend()
		if err := bogus.Configure(context.Background(), sdkdcs.ConfigureRequest{Scope: "demo", Member: "bogus", TTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
		if err := bogus.TouchMember(context.Background(), []byte("{not json")); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the malformed member key in the published state", func() bool {
			for _, p := range c.State().DCSProblems {
				if strings.Contains(p, "members/bogus") {
					return true
				}
			}
			return false
		})
		if st := c.State(); st.Cluster.LeaderName() != "pg1" || st.Error != "" {
			t.Fatalf("the loop stumbled on the malformed key: leader %q, error %q", st.Cluster.LeaderName(), st.Error)
		}
	})
}

// The stop of a primary is published before its leader key goes: the
// replicas that the release wakes ask the member about itself at once.
func TestStopPublishedBeforeRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := dcstest.NewMemoryStore()
		defer mem.Stop()
		b := mem.NewBackend()
		if err := b.Configure(context.Background(), sdkdcs.ConfigureRequest{Scope: "demo", Member: "pg1", TTL: 30 * time.Second}); err != nil {
			t.Fatal(err)
		}
		dyn := config.DefaultDynamic()
		dyn.LoopWait = 1
		var (
			mu                 sync.Mutex
			stoppedWhileLeader bool
		)
		c := New(Options{Name: "pg1", Scope: "demo", Version: "test", Bootstrap: dyn,
			Publish: func(st *State) {
				if !st.Observation.HA.Running && st.Observation.HA.DataDir == ha.DataDirInitialized && read(t, mem).LeaderName() == "pg1" {
					mu.Lock()
					stoppedWhileLeader = true
					mu.Unlock()
				}
			}}, dcs.New(b, hclog.NewNullLogger(), 5*time.Second), newFakePG(), noPeers{}, hclog.NewNullLogger())
		stop := run(c)
		eventually(t, "pg1 leads", func() bool { return read(t, mem).LeaderName() == "pg1" })
		stop()
		if l := read(t, mem).LeaderName(); l != "" {
			t.Fatalf("leader after shutdown: %q", l)
		}
		mu.Lock()
		defer mu.Unlock()
		if !stoppedWhileLeader {
			t.Fatal("the stopped PostgreSQL was published only after the leader key was released")
		}
	})
}

func TestSwitchover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := dcstest.NewMemoryStore()
		defer mem.Stop()
		pg1, pg2 := newFakePG(), newFakePG()
		peers := fakePeers{"pg1": pg1, "pg2": pg2}
		c1 := newControllerWithPeers(t, mem, "pg1", pg1, peers)
		c2 := newControllerWithPeers(t, mem, "pg2", pg2, peers)
		defer run(c1)()
		eventually(t, "pg1 leads", func() bool { return read(t, mem).LeaderName() == "pg1" })
		defer run(c2)()
		eventually(t, "pg2 streams", func() bool {
			m := read(t, mem).Member("pg2")
			return m != nil && m.State == "running"
		})

		writer := mem.NewBackend()
		if err := writer.Configure(context.Background(), sdkdcs.ConfigureRequest{Scope: "demo", Member: "ctl", TTL: time.Second}); err != nil {
			t.Fatal(err)
		}
		f := cluster.Failover{Leader: "pg1", Candidate: "pg2"}
		if _, err := writer.CompareAndSet(context.Background(), sdkdcs.KeyFailover, f.Marshal(), ""); err != nil {
			t.Fatal(err)
		}
		eventually(t, "pg2 leads after the switchover", func() bool {
			pg2.mu.Lock()
			defer pg2.mu.Unlock()
			return read(t, mem).LeaderName() == "pg2" && pg2.running && !pg2.recovery
		})
		eventually(t, "pg1 follows pg2 and /failover is cleared", func() bool {
			c := read(t, mem)
			pg1.mu.Lock()
			defer pg1.mu.Unlock()
			ok := pg1.running && pg1.recovery && pg1.upstream == "pg2" && c.Failover != nil && c.Failover.IsEmpty()
			if !ok {
				t.Logf("pg1: %s (%s) | pg2: %s | leader %s failover %+v | fake running=%v recovery=%v upstream=%q",
					c1.State().Reason, c1.State().Error, c2.State().Reason, c.LeaderName(), c.Failover, pg1.running, pg1.recovery, pg1.upstream)
			}
			return ok
		})
	})
}

// TestStatusPublishesOwnSlot: with member_slots_ttl the replicas keep a
// slot for the leader as for every other member; the leader publishes its
// own position under its slot name in /status so they can advance it.
func TestStatusPublishesOwnSlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := dcstest.NewMemoryStore()
		defer mem.Stop()
		pg1 := newFakePG()
		c1 := newController(t, mem, "pg-1", pg1)
		defer run(c1)()
		eventually(t, "pg-1 leads and publishes its own slot in /status", func() bool {
			c := read(t, mem)
			return c.LeaderName() == "pg-1" && c.Status.Optime == 100 && c.Status.Slots["pg_1"] == 100
		})
	})
}

// downAfterFailsafe is a backend that becomes unreachable as soon as
// /failsafe has been written, before the writer reads it back.
type downAfterFailsafe struct {
	sdkdcs.Backend
	mu   sync.Mutex
	down bool
}

var errDCSDown = errors.New("the DCS is down")

func (b *downAfterFailsafe) isDown() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.down
}

func (b *downAfterFailsafe) Set(ctx context.Context, key sdkdcs.Key, data []byte) error {
	if b.isDown() {
		return errDCSDown
	}
	if err := b.Backend.Set(ctx, key, data); err != nil {
		return err
	}
	if key == sdkdcs.KeyFailsafe {
		b.mu.Lock()
		b.down = true
		b.mu.Unlock()
	}
	return nil
}

func (b *downAfterFailsafe) GetCluster(ctx context.Context) (*sdkdcs.Cluster, error) {
	if b.isDown() {
		return nil, errDCSDown
	}
	return b.Backend.GetCluster(ctx)
}

func (b *downAfterFailsafe) RenewLeader(ctx context.Context) error {
	if b.isDown() {
		return errDCSDown
	}
	return b.Backend.RenewLeader(ctx)
}

func (b *downAfterFailsafe) TouchMember(ctx context.Context, data []byte) error {
	if b.isDown() {
		return errDCSDown
	}
	return b.Backend.TouchMember(ctx, data)
}

func (b *downAfterFailsafe) CompareAndSet(ctx context.Context, key sdkdcs.Key, data []byte, version string) (string, error) {
	if b.isDown() {
		return "", errDCSDown
	}
	return b.Backend.CompareAndSet(ctx, key, data, version)
}

// newFailsafeLeader is a lone member in failsafe mode (loop_wait 1,
// retry_timeout 2) on a DCS that goes down once /failsafe was written.
func newFailsafeLeader(t *testing.T) (*Controller, *downAfterFailsafe, *fakePG) {
	t.Helper()
	mem := dcstest.NewMemoryStore()
	t.Cleanup(mem.Stop)
	b := &downAfterFailsafe{Backend: mem.NewBackend()}
	if err := b.Configure(context.Background(), sdkdcs.ConfigureRequest{Scope: "demo", Member: "pg1", TTL: 30 * time.Second}); err != nil {
		t.Fatal(err)
	}
	dyn := config.DefaultDynamic()
	dyn.LoopWait = 1
	dyn.RetryTimeout = 2
	dyn.FailsafeMode = true
	pg := newFakePG()
	c := New(Options{Name: "pg1", Scope: "demo", APIURL: "http://127.0.0.1:8008/patroni", Version: "test", Bootstrap: dyn},
		dcs.New(b, hclog.NewNullLogger(), 2*time.Second), pg, noPeers{}, hclog.NewNullLogger())
	return c, b, pg
}

// TestFailsafeKnowsWhatItWrote: the DCS goes away right after the leader
// wrote /failsafe, before any read returned it. In failsafe mode the
// primary must still know the members it listed there and stay primary
// (here it is the only one); it used to count /failsafe as empty and
// demote after retry_timeout, as without failsafe mode.
func TestFailsafeKnowsWhatItWrote(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, b, pg := newFailsafeLeader(t)
		defer run(c)()
		eventually(t, "the DCS to go down after /failsafe was written", b.isDown)
		// Well past retry_timeout and the ttl: still the primary.
		time.Sleep(40 * time.Second)
		pg.mu.Lock()
		running, recovery := pg.running, pg.recovery
		pg.mu.Unlock()
		if !running || recovery {
			t.Fatalf("the primary demoted in failsafe mode (running %v, in recovery %v): %s", running, recovery, c.State().Reason)
		}
		if r := c.State().Reason; !strings.Contains(r, "failsafe mode active") {
			t.Fatalf("last cycle: %s", r)
		}
		// A primary kept by failsafe mode is the leader for the health
		// checks (GET /primary answers 200), long after its key lapsed.
		if e := c.State().LeaderExpiry; !e.After(time.Now()) {
			t.Fatalf("published leader expiry %v is not in the future: /primary would answer 503", e)
		}
	})
}

// slowRenewal is a backend whose leader-key calls take two seconds after
// the DCS refreshed the key, as a slow network answer would.
type slowRenewal struct {
	sdkdcs.Backend
	mu        sync.Mutex
	refreshed time.Time
}

func (b *slowRenewal) note() {
	b.mu.Lock()
	b.refreshed = time.Now()
	b.mu.Unlock()
	time.Sleep(2 * time.Second)
}

func (b *slowRenewal) AcquireLeader(ctx context.Context) (string, error) {
	v, err := b.Backend.AcquireLeader(ctx)
	b.note()
	return v, err
}

func (b *slowRenewal) RenewLeader(ctx context.Context) error {
	err := b.Backend.RenewLeader(ctx)
	b.note()
	return err
}

// TestLeaderExpiryNotBeyondTheKey: the expiry the leader publishes (and its
// health checks trust) counts from before the renewal request, never from
// its slow answer: the key must not be believed to live longer than the DCS
// keeps it.
func TestLeaderExpiryNotBeyondTheKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := dcstest.NewMemoryStore()
		defer mem.Stop()
		const ttl = 30 * time.Second
		b := &slowRenewal{Backend: mem.NewBackend()}
		if err := b.Configure(context.Background(), sdkdcs.ConfigureRequest{Scope: "demo", Member: "pg1", TTL: ttl}); err != nil {
			t.Fatal(err)
		}
		dyn := config.DefaultDynamic()
		dyn.LoopWait = 1
		pg := newFakePG()
		c := New(Options{Name: "pg1", Scope: "demo", APIURL: "http://127.0.0.1:8008/patroni", Version: "test", Bootstrap: dyn},
			dcs.New(b, hclog.NewNullLogger(), 5*time.Second), pg, noPeers{}, hclog.NewNullLogger())
		defer run(c)()
		for i := 0; i < 20; i++ {
			time.Sleep(time.Second)
			st := c.State()
			if st == nil || st.LeaderExpiry.IsZero() {
				continue
			}
			b.mu.Lock()
			limit := b.refreshed.Add(ttl)
			b.mu.Unlock()
			if st.LeaderExpiry.After(limit) {
				t.Fatalf("published leader expiry %v is %v past the key's (refreshed %v + ttl)", st.LeaderExpiry, st.LeaderExpiry.Sub(limit), limit.Add(-ttl))
			}
		}
		if c.State().LeaderExpiry.IsZero() {
			t.Fatal("pg1 never held the leader key")
		}
	})
}

// leaseDCS is a backend whose leader-key renewal can be made to fail or to
// hang until the caller's deadline, while every other call works. It
// records when the last successful renewal was sent: the DCS counts the
// key's ttl from no earlier than that.
type leaseDCS struct {
	sdkdcs.Backend
	mu        sync.Mutex
	renew     error // returned by RenewLeader when set
	hang      bool  // RenewLeader blocks until its context ends
	hangReads bool  // and so does GetCluster
	lastSent  time.Time
	failedAt  time.Time
	renewDone bool
}

func (b *leaseDCS) RenewLeader(ctx context.Context) error {
	b.mu.Lock()
	renew, hang := b.renew, b.hang
	b.mu.Unlock()
	sent := time.Now()
	switch {
	case hang:
		<-ctx.Done()
		err := ctx.Err()
		b.mu.Lock()
		if b.failedAt.IsZero() {
			b.failedAt = time.Now()
		}
		b.mu.Unlock()
		return err
	case renew != nil:
		b.mu.Lock()
		if b.failedAt.IsZero() {
			b.failedAt = time.Now()
		}
		b.mu.Unlock()
		return renew
	}
	err := b.Backend.RenewLeader(ctx)
	if err == nil {
		b.mu.Lock()
		b.lastSent, b.renewDone = sent, true
		b.mu.Unlock()
	}
	return err
}

func (b *leaseDCS) GetCluster(ctx context.Context) (*sdkdcs.Cluster, error) {
	b.mu.Lock()
	hang := b.hangReads
	b.mu.Unlock()
	if hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return b.Backend.GetCluster(ctx)
}

func (b *leaseDCS) AcquireLeader(ctx context.Context) (string, error) {
	sent := time.Now()
	v, err := b.Backend.AcquireLeader(ctx)
	if err == nil {
		b.mu.Lock()
		b.lastSent = sent
		b.mu.Unlock()
	}
	return v, err
}

func (b *leaseDCS) set(fn func(b *leaseDCS)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	fn(b)
}

// leaseTTL is the ttl of the lease tests (Patroni's default timing).
const leaseTTL = 30 * time.Second

// startLeaseLeader runs a controller for pg1 on a leaseDCS until it leads
// with its key renewed at least once.
func startLeaseLeader(t *testing.T, mem *dcstest.MemoryStore, pg *fakePG, loopWait int) (*Controller, *leaseDCS, func()) {
	t.Helper()
	b := &leaseDCS{Backend: mem.NewBackend()}
	if err := b.Configure(context.Background(), sdkdcs.ConfigureRequest{Scope: "demo", Member: "pg1", TTL: leaseTTL}); err != nil {
		t.Fatal(err)
	}
	dyn := config.DefaultDynamic()
	dyn.LoopWait = config.Seconds(loopWait)
	c := New(Options{Name: "pg1", Scope: "demo", APIURL: "http://127.0.0.1:8008/patroni", Version: "test", Bootstrap: dyn},
		dcs.New(b, hclog.NewNullLogger(), 10*time.Second), pg, noPeers{}, hclog.NewNullLogger())
	stop := run(c)
	eventually(t, "pg1 leads and renews its key", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.renewDone && read(t, mem).LeaderName() == "pg1"
	})
	return c, b, stop
}

// assertStoppedInTime checks that the primary went down before the DCS
// could have let its leader key expire, with a second to spare.
func assertStoppedInTime(t *testing.T, pg *fakePG, b *leaseDCS, wantMode string) {
	t.Helper()
	var at time.Time
	var mode string
	eventually(t, "the primary stopped", func() bool {
		at, mode = pg.stopped()
		return !at.IsZero()
	})
	b.mu.Lock()
	expiry := b.lastSent.Add(leaseTTL)
	b.mu.Unlock()
	if margin := expiry.Sub(at); margin < time.Second {
		t.Fatalf("the primary stopped %v before its key could expire (stopped %v, key renewed %v): want at least 1s", margin, at, expiry.Add(-leaseTTL))
	}
	if mode != wantMode {
		t.Fatalf("stop mode %q, want %q", mode, wantMode)
	}
}

// TestRenewalFailureDemotes: the renewal of the leader key fails while the
// DCS still answers reads. The primary demotes at once (Patroni: "demoted
// self because failed to update leader lock"), without waiting for the key
// to lapse and without re-acquiring it as the running primary.
func TestRenewalFailureDemotes(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		mode string
	}{
		// The DCS did not answer: the key lives on until the lease ends, so
		// the stop is a fast one.
		{"unavailable", fmt.Errorf("renewing: %w", sdkdcs.ErrUnavailable), ha.StopFast},
		// The DCS said the key is someone else's: immediate.
		{"key lost", fmt.Errorf("renewing: %w", sdkdcs.ErrVersionMismatch), ha.StopImmediate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				mem := dcstest.NewMemoryStore()
				defer mem.Stop()
				pg := newFakePG()
				c, b, stop := startLeaseLeader(t, mem, pg, 10)
				defer stop()
				b.set(func(b *leaseDCS) { b.renew = tc.err })
				assertStoppedInTime(t, pg, b, tc.mode)
				b.mu.Lock()
				failedAt := b.failedAt
				b.mu.Unlock()
				if at, _ := pg.stopped(); at.Sub(failedAt) > time.Second {
					t.Fatalf("stopped %v after the failed renewal: the decision must come at once, not a loop later", at.Sub(failedAt))
				}
				eventually(t, "the reason published", func() bool {
					return strings.Contains(c.State().Reason, "failed to update leader lock") || strings.Contains(c.State().Reason, "not mine any more")
				})
				// While renewals fail, the server is not started as a primary
				// again, whatever the reads show.
				time.Sleep(2 * leaseTTL)
				pg.mu.Lock()
				primary := pg.running && !pg.recovery
				pg.mu.Unlock()
				if primary {
					t.Fatalf("the primary came back while its renewals fail: %s", c.State().Reason)
				}
			})
		})
	}
}

// TestHangingRenewalStopsBeforeTheKeyExpires: the renewal hangs instead of
// failing (packets dropped), and the fast stop of PostgreSQL hangs too (a
// stalled disk). Every call of the leader's cycle is bound by the lease,
// and the fast stop becomes an immediate one at the stop margin: the
// server is down before the DCS can let the key expire.
func TestHangingRenewalStopsBeforeTheKeyExpires(t *testing.T) {
	for _, reads := range []bool{false, true} {
		t.Run(fmt.Sprintf("reads hang %v", reads), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				mem := dcstest.NewMemoryStore()
				defer mem.Stop()
				pg := newFakePG()
				_, b, stop := startLeaseLeader(t, mem, pg, 10)
				defer stop()
				pg.mu.Lock()
				pg.hangFastStop = true
				pg.mu.Unlock()
				b.set(func(b *leaseDCS) { b.hang, b.hangReads = true, reads })
				assertStoppedInTime(t, pg, b, ha.StopImmediate)
			})
		})
	}
}

// TestHungActionBoundByTheLease: the DCS answers, but an action of the
// leader's cycle (slot maintenance on a stalled disk) hangs for good.
// Unbounded, it would hold the loop while the leader key lapses under a
// running primary; bound by the lease, it ends in time and the loop goes
// on renewing the key: it never lapses and the primary keeps running.
func TestHungActionBoundByTheLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := dcstest.NewMemoryStore()
		defer mem.Stop()
		pg := newFakePG()
		_, b, stop := startLeaseLeader(t, mem, pg, 10)
		defer stop()
		pg.mu.Lock()
		pg.hangSlots = true
		pg.mu.Unlock()
		for end := time.Now().Add(3 * leaseTTL); time.Now().Before(end); {
			time.Sleep(500 * time.Millisecond)
			b.mu.Lock()
			age := time.Since(b.lastSent)
			b.mu.Unlock()
			if age > leaseTTL-ha.StopMargin(leaseTTL) {
				t.Fatalf("the leader key was last renewed %v ago: the hung action held the loop", age)
			}
			if l := read(t, mem).LeaderName(); l != "pg1" {
				t.Fatalf("leader %q: the key lapsed", l)
			}
		}
		if at, _ := pg.stopped(); !at.IsZero() {
			t.Fatal("the primary was stopped although its key was renewed")
		}
	})
}

// TestMalformedConfigKeepsTiming: /config with loop_wait 0 and
// retry_timeout 0, as patronictl 3.0.2 or etcdctl write it without a check.
// Read as it is, every DCS call would fail at once (a zero deadline), the
// primary would demote and no member could read the fix. The timing in
// effect stays, the rejected keys are published, and a fixed /config is
// taken in.
func TestMalformedConfigKeepsTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := dcstest.NewMemoryStore()
		defer mem.Stop()
		pg := newFakePG()
		c := newController(t, mem, "pg1", pg)
		defer run(c)()
		eventually(t, "pg1 leads with /config written", func() bool {
			cl := read(t, mem)
			return cl.LeaderName() == "pg1" && cl.Config != nil
		})

		writer := mem.NewBackend()
		if err := writer.Configure(context.Background(), sdkdcs.ConfigureRequest{Scope: "demo", Member: "ctl", TTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
		set := func(value string) {
			t.Helper()
			version := read(t, mem).Config.Version
			if _, err := writer.CompareAndSet(context.Background(), sdkdcs.KeyConfig, []byte(value), version); err != nil {
				t.Fatal(err)
			}
		}
		set(`{"loop_wait": 0, "retry_timeout": 0, "maximum_lag_on_failover": 4096}`)
		eventually(t, "the rejected keys published", func() bool {
			var loop, retry bool
			for _, p := range c.State().DCSProblems {
				loop = loop || strings.Contains(p, "/config: loop_wait:")
				retry = retry || strings.Contains(p, "/config: retry_timeout:")
			}
			return loop && retry
		})
		if d := c.State().Dynamic; d.TTL != 30 || d.LoopWait != 1 || d.RetryTimeout != 10 || d.MaximumLagOnFailover != 4096 {
			t.Fatalf("dynamic configuration in effect: ttl %d loop_wait %d retry_timeout %d maximum_lag_on_failover %d, want 30/1/10 and the new 4096",
				d.TTL, d.LoopWait, d.RetryTimeout, d.MaximumLagOnFailover)
		}
		// Well past the ttl: still the primary holding its key.
		time.Sleep(90 * time.Second)
		st := c.State()
		pg.mu.Lock()
		running, recovery := pg.running, pg.recovery
		pg.mu.Unlock()
		if !running || recovery || read(t, mem).LeaderName() != "pg1" || st.Error != "" || !st.DCSReachable {
			t.Fatalf("the primary did not keep working (running %v, in recovery %v, leader %q): %s / %s", running, recovery, read(t, mem).LeaderName(), st.Reason, st.Error)
		}

		set(`{"loop_wait": 2, "retry_timeout": 5, "ttl": 20}`)
		eventually(t, "the fixed /config in effect, no problem left", func() bool {
			st := c.State()
			return st.Dynamic.TTL == 20 && st.Dynamic.LoopWait == 2 && st.Dynamic.RetryTimeout == 5 && len(st.DCSProblems) == 0
		})
	})
}

// TestReloadDuringPromotion: a configuration reload (SIGHUP, POST /reload)
// while the member promotes is applied to PostgreSQL by the loop once the
// promotion ended, never under it: a standby setup rendered before the
// promotion must not be written back over the promoted server's files.
func TestReloadDuringPromotion(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := dcstest.NewMemoryStore()
		defer mem.Stop()
		pg1, pg2 := newFakePG(), newFakePG()
		peers := fakePeers{"pg1": pg1, "pg2": pg2}
		stop1 := run(newControllerWithPeers(t, mem, "pg1", pg1, peers))
		eventually(t, "pg1 leads", func() bool { return read(t, mem).LeaderName() == "pg1" })

		var (
			mu      sync.Mutex
			applied int
			overlap bool
		)
		b := mem.NewBackend()
		if err := b.Configure(context.Background(), sdkdcs.ConfigureRequest{Scope: "demo", Member: "pg2", TTL: 30 * time.Second}); err != nil {
			t.Fatal(err)
		}
		dyn := config.DefaultDynamic()
		dyn.LoopWait = 1
		c2 := New(Options{Name: "pg2", Scope: "demo", ConnURL: "postgres://127.0.0.1:5433/postgres", APIURL: "http://127.0.0.1:8009/patroni", Version: "test", Bootstrap: dyn,
			ApplyDynamic: func(context.Context, config.Effective) (bool, error) {
				pg2.mu.Lock()
				promoting := pg2.promoting
				pg2.mu.Unlock()
				mu.Lock()
				applied++
				overlap = overlap || promoting
				mu.Unlock()
				return true, nil
			}}, dcs.New(b, hclog.NewNullLogger(), 5*time.Second), pg2, peers, hclog.NewNullLogger())
		defer run(c2)()
		eventually(t, "pg2 streams", func() bool {
			m := read(t, mem).Member("pg2")
			return m != nil && m.State == "running"
		})
		count := func() int {
			mu.Lock()
			defer mu.Unlock()
			return applied
		}
		gate := make(chan struct{})
		pg2.mu.Lock()
		pg2.promoteGate = gate
		pg2.mu.Unlock()
		stop1() // pg1 stops and releases the key: pg2 promotes
		eventually(t, "pg2 promoting", func() bool {
			pg2.mu.Lock()
			defer pg2.mu.Unlock()
			return pg2.promoting
		})
		before := count()
		c2.SetLocal(LocalSettings{Tags: cluster.Tags{NoLoadBalance: true}})
		time.Sleep(5 * time.Second) // several cycles while the promotion runs
		if n := count(); n != before {
			t.Fatalf("the reload was applied to postgres %d time(s) during the promotion", n-before)
		}
		close(gate)
		eventually(t, "the reload applied after the promotion", func() bool { return count() > before })
		mu.Lock()
		defer mu.Unlock()
		if overlap {
			t.Fatal("the configuration was applied while the promotion ran")
		}
	})
}
