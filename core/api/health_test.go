package api

import (
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/config"
)

// get performs a GET on the server's handler and returns the code.
func get(t *testing.T, s *Server, target string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	return rec
}

type healthCase struct {
	path string
	want int
}

// expect runs the paths against one snapshot as a client would: GET, and
// checks the status code.
func expect(t *testing.T, snap *Snapshot, cases ...healthCase) {
	t.Helper()
	s := newTestServer(snap, ServerConfig{})
	for _, c := range cases {
		rec := get(t, s, c.path)
		if rec.Code != c.want {
			t.Errorf("GET %s = %d, want %d", c.path, rec.Code, c.want)
		}
	}
}

const (
	ok  = http.StatusOK
	bad = http.StatusServiceUnavailable
)

func TestHealthPrimary(t *testing.T) {
	expect(t, primarySnapshot(t),
		healthCase{"/", ok},
		healthCase{"/primary", ok},
		healthCase{"/master", ok},
		healthCase{"/read-write", ok},
		healthCase{"/leader", ok},
		healthCase{"/standby-leader", bad},
		healthCase{"/standby_leader", bad},
		healthCase{"/replica", bad},
		healthCase{"/read-only", ok},
		healthCase{"/sync", bad},
		healthCase{"/synchronous", bad},
		healthCase{"/async", bad},
		healthCase{"/asynchronous", bad},
		healthCase{"/quorum", bad},
		healthCase{"/read-only-sync", ok},
		healthCase{"/read-only-synchronous", ok},
		healthCase{"/read-only-quorum", ok},
		healthCase{"/health", ok},
		healthCase{"/nonsense", bad},
		// Patroni routes by substring: these still reach the primary check.
		healthCase{"/primary/", ok},
		healthCase{"/master/x", ok},
		// Tags are ignored on the leader checks, checked on the others.
		healthCase{"/primary?tag_zone=b", ok},
		healthCase{"/read-only?tag_zone=a", ok},
		healthCase{"/read-only?tag_zone=b", bad},
		healthCase{"/health?tag_rack=1", bad},
		// Lag parameters concern replicas only.
		healthCase{"/primary?lag=0", ok},
	)
}

func TestHealthPrimaryLeaseExpired(t *testing.T) {
	snap := primarySnapshot(t)
	snap.LeaderExpiry = testNow.Add(-time.Second)
	expect(t, snap,
		healthCase{"/primary", bad},
		healthCase{"/leader", bad},
		healthCase{"/read-only", bad},
		healthCase{"/read-only-sync", bad},
		healthCase{"/health", ok},
	)
	snap = primarySnapshot(t)
	snap.LeaderExpiry = time.Time{}
	expect(t, snap, healthCase{"/primary", bad}, healthCase{"/leader", bad})
}

// A leader cut off from the DCS stays leader until its key would expire
// (Patroni's is_leader), but the checks that need the DCS fail.
func TestHealthPrimaryDCSUnreachable(t *testing.T) {
	snap := primarySnapshot(t)
	snap.DCSReachable = false
	expect(t, snap,
		healthCase{"/primary", ok},
		healthCase{"/leader", ok},
		healthCase{"/read-only", ok},
		healthCase{"/read-only-sync", bad},
		healthCase{"/health", ok},
	)
}

func TestHealthPaused(t *testing.T) {
	// Paused and cut off from the DCS: PostgreSQL's role decides, lease or
	// not.
	snap := primarySnapshot(t)
	snap.Status.Pause = true
	snap.DCSReachable = false
	snap.LeaderExpiry = time.Time{}
	expect(t, snap,
		healthCase{"/primary", ok},
		healthCase{"/leader", ok},
		healthCase{"/standby-leader", bad},
		healthCase{"/replica", bad},
	)
	// Paused with the DCS reachable: the lease decides as usual.
	snap = primarySnapshot(t)
	snap.Status.Pause = true
	snap.LeaderExpiry = time.Time{}
	expect(t, snap, healthCase{"/primary", bad}, healthCase{"/leader", bad})
	// A paused replica is still a replica.
	snap = replicaSnapshot(t)
	snap.Status.Pause = true
	snap.DCSReachable = false
	expect(t, snap, healthCase{"/primary", bad}, healthCase{"/replica", ok}, healthCase{"/leader", bad})
}

func TestHealthReplicaStreaming(t *testing.T) {
	expect(t, replicaSnapshot(t),
		healthCase{"/", bad},
		healthCase{"/primary", bad},
		healthCase{"/master", bad},
		healthCase{"/read-write", bad},
		healthCase{"/leader", bad},
		healthCase{"/standby-leader", bad},
		healthCase{"/replica", ok},
		healthCase{"/read-only", ok},
		healthCase{"/sync", ok},
		healthCase{"/synchronous", ok},
		healthCase{"/async", bad},
		healthCase{"/asynchronous", bad},
		healthCase{"/quorum", bad},
		healthCase{"/read-only-sync", ok},
		healthCase{"/read-only-quorum", bad},
		healthCase{"/health", ok},
		healthCase{"/replica?tag_zone=b", ok},
		healthCase{"/replica?tag_zone=a", bad},
		healthCase{"/replica?tag_nofailover=true", bad},
		healthCase{"/replica?tag_zone=b&tag_rack=1", bad},
		healthCase{"/replica?tag_zone=", ok}, // an empty value is no parameter (parse_qs)
		healthCase{"/replica?replication_state=streaming", ok},
		healthCase{"/replica?replication_state=in%20archive%20recovery", bad},
	)
}

// node2 replays 256 bytes behind the leader's optime.
func TestHealthReplicaLag(t *testing.T) {
	expect(t, replicaSnapshot(t),
		healthCase{"/replica?lag=1MB", ok},
		healthCase{"/replica?lag=1kB", ok},
		healthCase{"/replica?lag=256", ok},
		healthCase{"/replica?lag=255", bad},
		healthCase{"/replica?lag=0", bad},
		healthCase{"/replica?lag=16kB", ok},
		healthCase{"/replica?lag=10MB", ok},
		healthCase{"/replica?lag=1GB", ok},
		healthCase{"/replica?lag=0.1kB", bad}, // 102 bytes
		healthCase{"/replica?lag=", ok},
		healthCase{"/replica?lag=garbage", ok}, // unparsable: no bound, as Patroni
		healthCase{"/read-only?lag=100", bad},
		healthCase{"/async?lag=100", bad},
		healthCase{"/sync?lag=100", bad},
		healthCase{"/sync?lag=1MB", ok},
		// /health ignores lag.
		healthCase{"/health?lag=0", ok},
	)

	// The leader's position is the larger of /status optime and the
	// walreceiver's latest_end_lsn.
	snap := replicaSnapshot(t)
	snap.LatestEndLSN = primaryLSN + 1<<20
	expect(t, snap, healthCase{"/replica?lag=1MB", bad}, healthCase{"/replica?lag=2MB", ok})

	// Without a DCS view and without latest_end_lsn nothing is known about
	// the leader: not lagging.
	snap = replicaSnapshot(t)
	snap.DCSReachable = false
	snap.LatestEndLSN = 0
	expect(t, snap, healthCase{"/replica?lag=0", ok})
	snap.LatestEndLSN = primaryLSN
	expect(t, snap, healthCase{"/replica?lag=0", bad}, healthCase{"/replica?lag=1kB", ok})
}

func TestHealthReplicaAsyncAndQuorum(t *testing.T) {
	snap := replicaSnapshot(t)
	snap.Status.SyncStandby = false
	expect(t, snap,
		healthCase{"/async", ok},
		healthCase{"/asynchronous", ok},
		healthCase{"/sync", bad},
		healthCase{"/read-only-sync", bad},
		healthCase{"/read-only", ok},
	)
	snap = replicaSnapshot(t)
	snap.Status.SyncStandby, snap.Status.QuorumStandby = false, true
	expect(t, snap,
		healthCase{"/quorum", ok},
		healthCase{"/read-only-quorum", ok},
		healthCase{"/read-only-sync", bad},
		healthCase{"/async", bad},
		healthCase{"/sync", bad},
	)
}

func TestHealthReplicaDCSUnreachable(t *testing.T) {
	snap := replicaSnapshot(t)
	snap.DCSReachable = false
	expect(t, snap,
		healthCase{"/replica", ok},
		healthCase{"/read-only", ok},
		healthCase{"/health", ok},
		healthCase{"/sync", bad},
		healthCase{"/async", bad},
		healthCase{"/quorum", bad},
		healthCase{"/read-only-sync", bad},
	)
}

func TestHealthNoLoadBalance(t *testing.T) {
	snap := replicaSnapshot(t)
	snap.Status.Tags.NoLoadBalance = true
	expect(t, snap,
		healthCase{"/replica", bad},
		healthCase{"/replica?lag=1GB", bad},
		healthCase{"/read-only", bad},
		healthCase{"/sync", bad},
		healthCase{"/async", bad},
		healthCase{"/health", ok},
		healthCase{"/health?tag_noloadbalance=true", ok},
	)
}

func TestHealthReplicaNotRunning(t *testing.T) {
	for _, state := range []string{StateStarting, StateStopped, StateCrashed, StateCreatingReplica, StateUnknown} {
		snap := replicaSnapshot(t)
		snap.Status.State = state
		t.Run(state, func(t *testing.T) {
			expect(t, snap, healthCase{"/replica", bad}, healthCase{"/read-only", bad}, healthCase{"/health", bad})
		})
	}
	snap := replicaSnapshot(t)
	snap.Status.ReplicationState = ReplicationInArchiveRecovery
	expect(t, snap, healthCase{"/replica", ok}, healthCase{"/replica?replication_state=streaming", bad})
}

func TestHealthStandbyCluster(t *testing.T) {
	leader := primarySnapshot(t)
	leader.Dynamic.StandbyCluster = &config.StandbyCluster{Host: "10.0.0.5"}
	leader.Status.Role = cluster.RoleStandbyLeader
	leader.Status.XLog = &XLog{ReceivedLocation: ptr(primaryLSN), ReplayedLocation: ptr(primaryLSN)}
	expect(t, leader,
		healthCase{"/standby-leader", ok},
		healthCase{"/standby_leader", ok},
		healthCase{"/leader", ok},
		healthCase{"/primary", bad},
		healthCase{"/read-write", bad},
		healthCase{"/replica", bad},
		healthCase{"/read-only", ok},
		healthCase{"/read-only-sync", ok},
	)
	// Patroni also counts a standby leader that reports role replica.
	leader.Status.Role = cluster.RoleReplica
	expect(t, leader, healthCase{"/standby-leader", ok}, healthCase{"/replica", bad})

	follower := replicaSnapshot(t)
	follower.Dynamic.StandbyCluster = &config.StandbyCluster{Host: "10.0.0.5"}
	expect(t, follower,
		healthCase{"/standby-leader", bad},
		healthCase{"/leader", bad},
		healthCase{"/replica", ok},
	)
}

func TestHealthBeforeFirstSnapshot(t *testing.T) {
	s := newTestServer(nil, ServerConfig{})
	for _, p := range []string{"/", "/primary", "/replica", "/patroni", "/cluster", "/liveness", "/readiness", "/metrics"} {
		rec := get(t, s, p)
		want := bad
		if p == "/metrics" {
			want = ok // an empty scrape
		}
		if rec.Code != want {
			t.Errorf("GET %s before the first snapshot = %d, want %d", p, rec.Code, want)
		}
	}
}

func TestHealthBodyIsStatusDocument(t *testing.T) {
	s := newTestServer(replicaSnapshot(t), ServerConfig{})
	for _, p := range []string{"/primary", "/replica", "/patroni"} {
		rec := get(t, s, p)
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("GET %s: Content-Type %q", p, ct)
		}
		if got, want := rec.Body.String(), get(t, s, "/patroni").Body.String(); got != want {
			t.Errorf("GET %s body differs from /patroni:\n%s\n%s", p, got, want)
		}
	}
}

func TestLiveness(t *testing.T) {
	cases := []struct {
		name    string
		snap    *Snapshot
		ago     time.Duration
		paused  bool
		want    int
		explain string
	}{
		{"primary fresh", primarySnapshot(t), time.Second, false, ok, ""},
		{"primary late within ttl", primarySnapshot(t), testLoopWait + testTTL - time.Second, false, ok, ""},
		{"primary late beyond ttl", primarySnapshot(t), testLoopWait + testTTL + time.Second, false, bad, ""},
		{"replica late beyond ttl", replicaSnapshot(t), testLoopWait + testTTL + time.Second, false, ok, "replicas get 2*ttl"},
		{"replica late beyond 2 ttl", replicaSnapshot(t), testLoopWait + 2*testTTL + time.Second, false, bad, ""},
		{"paused stuck", primarySnapshot(t), time.Hour, true, ok, "a stuck loop is fine in pause"},
	}
	for _, c := range cases {
		c.snap.LastLoop = testNow.Add(-c.ago)
		c.snap.Status.Pause = c.paused
		rec := get(t, newTestServer(c.snap, ServerConfig{}), "/liveness")
		if rec.Code != c.want {
			t.Errorf("%s: GET /liveness = %d, want %d %s", c.name, rec.Code, c.want, c.explain)
		}
	}
	// A primary whose PostgreSQL is down gets the replica's allowance.
	snap := primarySnapshot(t)
	snap.Status.State = StateStopped
	snap.LastLoop = testNow.Add(-(testLoopWait + testTTL + time.Second))
	if rec := get(t, newTestServer(snap, ServerConfig{}), "/liveness"); rec.Code != ok {
		t.Errorf("stopped primary late beyond ttl: GET /liveness = %d, want 200", rec.Code)
	}
}

func TestReadiness(t *testing.T) {
	mod := func(f func(*Snapshot)) *Snapshot {
		s := replicaSnapshot(t)
		f(s)
		return s
	}
	cases := []struct {
		name string
		snap *Snapshot
		path string
		want int
	}{
		{"leader", primarySnapshot(t), "/readiness", ok},
		{"leader even with lag param", primarySnapshot(t), "/readiness?lag=0", ok},
		{"streaming replica within maximum_lag_on_failover", replicaSnapshot(t), "/readiness", ok},
		{"lag above ?lag", replicaSnapshot(t), "/readiness?lag=100", bad},
		{"lag at ?lag", replicaSnapshot(t), "/readiness?lag=256", ok},
		{"lag above maximum_lag_on_failover", mod(func(s *Snapshot) { s.Dynamic.MaximumLagOnFailover = 10 }), "/readiness", bad},
		{"write mode uses the received position", mod(func(s *Snapshot) { s.Status.XLog.ReceivedLocation = ptr(primaryLSN) }), "/readiness?lag=0&mode=write", ok},
		{"apply mode uses the replayed position", mod(func(s *Snapshot) { s.Status.XLog.ReceivedLocation = ptr(primaryLSN) }), "/readiness?lag=0", bad},
		{"not streaming", mod(func(s *Snapshot) { s.Status.ReplicationState = ReplicationInArchiveRecovery }), "/readiness", bad},
		{"not running", mod(func(s *Snapshot) { s.Status.State = StateStarting }), "/readiness", bad},
		{"DCS unreachable, no walreceiver position", mod(func(s *Snapshot) { s.DCSReachable, s.LatestEndLSN = false, 0 }), "/readiness", bad},
		{"DCS unreachable, failsafe active", mod(func(s *Snapshot) {
			s.DCSReachable, s.LatestEndLSN, s.Status.FailsafeModeIsActive = false, 0, true
		}), "/readiness", ok},
		{"DCS unreachable, walreceiver position known", mod(func(s *Snapshot) { s.DCSReachable = false }), "/readiness", ok},
		{"lost leader key", mod(func(s *Snapshot) { s.Status.Role = cluster.RolePrimary; s.Status.ReplicationState = "" }), "/readiness", bad},
	}
	for _, c := range cases {
		rec := get(t, newTestServer(c.snap, ServerConfig{}), c.path)
		if rec.Code != c.want {
			t.Errorf("%s: GET %s = %d, want %d", c.name, c.path, rec.Code, c.want)
		}
	}
}

func TestParseLag(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"1048576", 1048576, true},
		{" 42 ", 42, true},
		{"16kB", 16 << 10, true},
		{"10MB", 10 << 20, true},
		{"10 MB", 10 << 20, true},
		{"1GB", 1 << 30, true},
		{"2TB", 2 << 40, true},
		{"100B", 100, true},
		{"1.5kB", 1536, true},
		{"+7", 7, true},
		{"-1", -1, true},
		{"1kb", 0, false}, // units are case-sensitive, as in PostgreSQL
		{"1KB", 0, false},
		{"MB", 0, false},
		{"", 0, false},
		{"abc", 0, false},
		{"99999999TB", math.MaxInt64, true},
	}
	for _, c := range cases {
		got, ok := parseLag(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("parseLag(%q) = %d, %v; want %d, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func FuzzParseLag(f *testing.F) {
	for _, s := range []string{"16kB", "1.5GB", "-3", "1e3", ".", "0x10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = parseLag(s)
	})
}
