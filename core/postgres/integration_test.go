//go:build integration

package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/internal/testenv"
	"github.com/custos-ha/custos/core/reaper"
	"github.com/custos-ha/custos/testkit/poll"
)

// integration tells TestMain to run the tests as the postgres OS user.
const integration = true

const (
	superPass  = "su-pass"
	replPass   = "repl-pass"
	rewindPass = "rewind-pass"
)

func testLogger(t *testing.T) hclog.Logger {
	if !testing.Verbose() {
		return hclog.NewNullLogger()
	}
	return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Debug, Output: os.Stderr})
}

// node is one PostgreSQL instance of a test cluster.
type node struct {
	name string
	port int
	p    *Postgres
}

func (n *node) upstream() Upstream { return Upstream{Host: "127.0.0.1", Port: n.port} }

// newNode prepares a Postgres for a data directory that does not exist
// yet, with a short unix socket directory and settings that make tests
// fast. It is stopped (killed if need be) and closed at cleanup.
func newNode(t *testing.T, name string, mutate ...func(*Config)) *node {
	t.Helper()
	base := t.TempDir()
	sock, err := os.MkdirTemp("", "s")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sock) })
	port := testenv.FreePort(t)
	cfg := Config{
		Scope:          "itest",
		Name:           name,
		DataDir:        filepath.Join(base, "data"),
		BinDir:         testenv.PostgresBinDir(t),
		Listen:         "127.0.0.1:" + strconv.Itoa(port),
		ConnectAddress: "127.0.0.1:" + strconv.Itoa(port),
		Superuser:      Credentials{Username: "postgres", Password: superPass},
		Replication:    Credentials{Username: "replicator", Password: replPass},
		Rewind:         Credentials{Username: "rewinder", Password: rewindPass},
		Pgpass:         filepath.Join(base, "pgpass"),
		PgCtlTimeout:   30 * time.Second,
		UsePgRewind:    true,
		UseSlots:       true,
		Parameters: map[string]string{
			"unix_socket_directories": sock,
			"fsync":                   "off", // tests need no durability
			"shared_buffers":          "16MB",
			"max_connections":         "30",
			"log_min_messages":        "info",
		},
	}
	for _, m := range mutate {
		m(&cfg)
	}
	p, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := p.Stop(ctx, StopOptions{Mode: StopImmediate, Timeout: 10 * time.Second, KillOnTimeout: true}); err != nil {
			t.Errorf("stopping %s at cleanup: %v", name, err)
		}
		p.Close()
	})
	return &node{name: name, port: port, p: p}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// sql runs one statement on a node through a fresh connection and
// returns the first column of the first row as text.
func sql(t *testing.T, n *node, query string) string {
	t.Helper()
	var out string
	err := n.p.withConn(ctxT(t, 10*time.Second), func(c *pgx.Conn) error {
		rows, err := c.Query(context.Background(), query, pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			return err
		}
		defer rows.Close()
		if rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				return err
			}
			if len(vals) > 0 {
				out = fmt.Sprint(vals[0])
			}
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatalf("%s on %s: %v", query, n.name, err)
	}
	return out
}

func bootstrapPrimary(t *testing.T, n *node) {
	t.Helper()
	ctx := ctxT(t, 2*time.Minute)
	if err := n.p.Bootstrap(ctx); err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	if err := n.p.Start(ctx, 0); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := n.p.CreateRoles(ctx); err != nil {
		t.Fatalf("CreateRoles: %v", err)
	}
}

// cloneReplica runs pg_basebackup from the primary into the replica's data
// directory and starts it as a standby streaming through its member slot.
func cloneReplica(t *testing.T, primary, replica *node) {
	t.Helper()
	ctx := ctxT(t, 2*time.Minute)
	if err := replica.p.WritePgpass(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, replica.p.bin(BinPgBasebackup), "--pgdata="+replica.p.DataDir(), "-X", "stream",
		"--checkpoint=fast", "--dbname="+replica.p.ReplicationDSN(primary.upstream()))
	reaper.Prepare(cmd)
	cmd.Env = replica.p.Env()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_basebackup: %v\n%s", err, out)
	}
	up := primary.upstream()
	up.SlotName = replica.p.MemberSlot()
	if err := replica.p.Configure(Setup{Standby: true, Upstream: &up}); err != nil {
		t.Fatalf("Configure replica: %v", err)
	}
	if err := replica.p.Start(ctx, 0); err != nil {
		t.Fatalf("Start replica: %v", err)
	}
}

func observe(t *testing.T, n *node) Observation {
	t.Helper()
	o, err := n.p.Observe(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatalf("Observe %s: %v", n.name, err)
	}
	return o
}

func waitStreaming(t *testing.T, primary, replica *node) {
	t.Helper()
	poll.Eventually(t, 30*time.Second, replica.name+" streaming from "+primary.name, func() error {
		o, err := replica.p.Observe(context.Background())
		if err != nil {
			return err
		}
		if !o.InRecovery || !o.Streaming() {
			return fmt.Errorf("in recovery %v, walreceiver %+v", o.InRecovery, o.WALReceiver)
		}
		po, err := primary.p.Observe(context.Background())
		if err != nil {
			return err
		}
		for _, r := range po.Replication {
			if r.ApplicationName == replica.name && r.State == "streaming" {
				return nil
			}
		}
		return fmt.Errorf("%s's pg_stat_replication: %+v", primary.name, po.Replication)
	})

}

func waitCaughtUp(t *testing.T, primary, replica *node) {
	t.Helper()
	target := observe(t, primary).WALLSN
	poll.Eventually(t, 30*time.Second, replica.name+" replaying up to "+target.String(), func() error {
		o, err := replica.p.Observe(context.Background())
		if err != nil {
			return err
		}
		if o.ReplayedLSN < target {
			return fmt.Errorf("replayed %s", o.ReplayedLSN)
		}
		return nil
	})

}

func TestIntegrationCluster(t *testing.T) {
	stopReaper := reaper.Start(testLogger(t))
	t.Cleanup(stopReaper)

	hba := []string{
		"local all all trust",
		"host all all 127.0.0.1/32 scram-sha-256",
		"host replication all 127.0.0.1/32 scram-sha-256",
	}
	a := newNode(t, "node-a", func(c *Config) { c.PgHBA = hba })
	b := newNode(t, "node-b")

	t.Run("bootstrap", func(t *testing.T) {
		if st, _ := a.p.DataDirState(); st != DirAbsent {
			t.Fatalf("state before bootstrap: %v", st)
		}
		bootstrapPrimary(t, a)
		if st, _ := a.p.DataDirState(); st != DirInitialized {
			t.Fatalf("state after bootstrap: %v", st)
		}
		// Roles again: idempotent, passwords reset.
		if err := a.p.CreateRoles(ctxT(t, 30*time.Second)); err != nil {
			t.Fatalf("CreateRoles again: %v", err)
		}
		if got := sql(t, a, "SELECT rolreplication AND rolcanlogin FROM pg_roles WHERE rolname = 'replicator'"); got != "true" {
			t.Errorf("replicator role: %q", got)
		}
		if got := sql(t, a, "SELECT has_function_privilege('rewinder', 'pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)', 'EXECUTE')"); got != "true" {
			t.Errorf("rewinder grants: %q", got)
		}
		o := observe(t, a)
		if o.InRecovery || o.Timeline != 1 || o.WALLSN == 0 || o.ServerVersion < 120000 || o.PostmasterStartTime.IsZero() {
			t.Errorf("primary observation: %+v", o)
		}
		dd := a.p.DataDir()
		conf, _ := os.ReadFile(filepath.Join(dd, confFile))
		if !strings.HasPrefix(string(conf), confMarker) || !strings.Contains(string(conf), "port = '"+strconv.Itoa(a.port)+"'") {
			t.Errorf("postgresql.conf:\n%s", conf)
		}
		if _, err := os.Stat(filepath.Join(dd, baseConfFile)); err != nil {
			t.Errorf("initdb's postgresql.conf was not kept: %v", err)
		}
		if hbaData, _ := os.ReadFile(filepath.Join(dd, hbaFile)); !strings.Contains(string(hbaData), hba[2]) {
			t.Errorf("pg_hba.conf:\n%s", hbaData)
		}
		if fi, err := os.Stat(a.p.PgpassPath()); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("pgpass: %v %v", fi, err)
		}
		if got := sql(t, a, "SHOW cluster_name"); got != "itest" {
			t.Errorf("cluster_name = %q", got)
		}
		if got := sql(t, a, "SHOW wal_log_hints"); got != "on" {
			t.Errorf("wal_log_hints = %q", got)
		}
		cd, err := a.p.ControlData(ctxT(t, 10*time.Second))
		if err != nil || cd.ClusterState != StateInProduction || cd.SystemIdentifier == 0 {
			t.Errorf("ControlData: %+v %v", cd, err)
		}
	})

	t.Run("slots", func(t *testing.T) {
		ctx := ctxT(t, 30*time.Second)
		if err := a.p.Exec(ctx, "SELECT pg_create_physical_replication_slot('stale_one')"); err != nil {
			t.Fatal(err)
		}
		want := []string{cluster.SlotName(b.name)}
		ch, err := a.p.EnsurePhysicalSlots(ctx, want)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(ch.Created, ",") != "node_b" || strings.Join(ch.Dropped, ",") != "stale_one" {
			t.Errorf("first ensure: %+v", ch)
		}
		ch, err = a.p.EnsurePhysicalSlots(ctx, want)
		if err != nil || len(ch.Created)+len(ch.Dropped) != 0 {
			t.Errorf("second ensure: %+v %v", ch, err)
		}
	})

	t.Run("replica", func(t *testing.T) {
		cloneReplica(t, a, b)
		waitStreaming(t, a, b)
		po := observe(t, a)
		if len(po.Slots) != 1 || po.Slots[0].Name != "node_b" || !po.Slots[0].Active {
			t.Errorf("slots on the primary: %+v", po.Slots)
		}
		ro := observe(t, b)
		if ro.WALReceiver.SlotName != "node_b" || ro.Timeline != 1 || ro.ReceivedLSN == 0 {
			t.Errorf("replica observation: %+v %+v", ro, ro.WALReceiver)
		}
		// The replica kept the primary's pg_hba.conf (none configured) and
		// has its own port.
		if got := sql(t, b, "SHOW port"); got != strconv.Itoa(b.port) {
			t.Errorf("replica port = %s", got)
		}
		sql(t, a, "CREATE TABLE t (id int PRIMARY KEY, origin text)")
		sql(t, a, "INSERT INTO t VALUES (1, 'a')")
		waitCaughtUp(t, a, b)
		if got := sql(t, b, "SELECT origin FROM t WHERE id = 1"); got != "a" {
			t.Errorf("replicated row: %q", got)
		}
	})

	t.Run("adopt", func(t *testing.T) {
		p2, err := New(a.p.Config(), testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		defer p2.Close()
		if err := p2.Start(ctxT(t, 10*time.Second), time.Second); !errors.Is(err, ErrAlreadyRunning) {
			t.Errorf("Start over a running postmaster: %v", err)
		}
		ok, err := p2.Adopt(ctxT(t, 10*time.Second))
		if err != nil || !ok {
			t.Fatalf("Adopt = %v, %v", ok, err)
		}
		if p2.Postmaster().Pid() != a.p.Postmaster().Pid() || p2.Postmaster().Child() {
			t.Errorf("adopted pid %d, running pid %d", p2.Postmaster().Pid(), a.p.Postmaster().Pid())
		}
		if o, err := p2.Observe(ctxT(t, 10*time.Second)); err != nil || o.InRecovery {
			t.Errorf("Observe through the adopted value: %+v %v", o, err)
		}
		if err := p2.Reload(ctxT(t, 10*time.Second)); err != nil {
			t.Errorf("Reload: %v", err)
		}
	})

	t.Run("pending_restart", func(t *testing.T) {
		cfg := a.p.Config()
		cfg.Parameters["max_connections"] = "40"
		if err := a.p.Reconfigure(cfg); err != nil {
			t.Fatal(err)
		}
		setup, _ := a.p.LastSetup()
		if err := a.p.Configure(setup); err != nil {
			t.Fatal(err)
		}
		if err := a.p.Reload(ctxT(t, 5*time.Second)); err != nil {
			t.Fatal(err)
		}
		poll.Eventually(t, 10*time.Second, "max_connections pending restart", func() error {
			o, err := a.p.Observe(context.Background())
			if err != nil {
				return err
			}
			for _, s := range o.PendingRestart {
				if s.Name == "max_connections" && s.Old == "30" && s.New == "40" {
					return nil
				}
			}
			return fmt.Errorf("pending: %+v", o.PendingRestart)
		})

		// The replica needs max_connections >= the primary's: raise it there first.
		cfgB := b.p.Config()
		cfgB.Parameters["max_connections"] = "40"
		if err := b.p.Reconfigure(cfgB); err != nil {
			t.Fatal(err)
		}
		setupB, _ := b.p.LastSetup()
		if err := b.p.Configure(setupB); err != nil {
			t.Fatal(err)
		}
		if err := b.p.Restart(ctxT(t, time.Minute), StopOptions{Mode: StopFast}, 0); err != nil {
			t.Fatal(err)
		}
		// A second value holding a connection across a restart it did not
		// make: its next Observe reconnects instead of failing.
		watcher, err := New(a.p.Config(), testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		defer watcher.Close()
		if _, err := watcher.Observe(ctxT(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		if err := a.p.Restart(ctxT(t, time.Minute), StopOptions{Mode: StopFast}, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := watcher.Observe(ctxT(t, 10*time.Second)); err != nil {
			t.Errorf("Observe after a restart behind its back: %v", err)
		}
		if o := observe(t, a); len(o.PendingRestart) != 0 {
			t.Errorf("pending after restart: %+v", o.PendingRestart)
		}
		waitStreaming(t, a, b)
	})

	t.Run("promote_and_rewind", func(t *testing.T) {
		ctx := ctxT(t, 2*time.Minute)
		// b becomes a primary on timeline 2 while a keeps writing on 1.
		if err := b.p.Promote(ctx, true, 0); err != nil {
			t.Fatalf("Promote: %v", err)
		}
		bo := observe(t, b)
		if bo.InRecovery || bo.Timeline != 2 {
			t.Fatalf("after promote: in recovery %v, timeline %d", bo.InRecovery, bo.Timeline)
		}
		if err := b.p.Checkpoint(ctx); err != nil { // checkpoint_after_promote
			t.Fatal(err)
		}
		sql(t, b, "INSERT INTO t VALUES (2, 'b')")
		sql(t, a, "INSERT INTO t VALUES (3, 'a-diverged')")
		if _, err := b.p.EnsurePhysicalSlots(ctx, []string{cluster.SlotName(a.name)}); err != nil {
			t.Fatal(err)
		}
		if err := a.p.Stop(ctx, StopOptions{Mode: StopFast}); err != nil {
			t.Fatalf("Stop: %v", err)
		}

		tl, hist, err := a.p.LeaderTimeline(ctx, b.upstream())
		if err != nil || tl != 2 || len(hist) != 1 || hist[0].Timeline != 1 {
			t.Fatalf("LeaderTimeline = %d %+v %v", tl, hist, err)
		}
		if local, err := b.p.LocalHistory(2); err != nil || len(local) != 1 || local[0] != hist[0] {
			t.Errorf("LocalHistory(2) on the new primary = %+v, %v; want %+v", local, err, hist)
		}
		cd, err := a.p.ControlData(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pos, ok := PositionFromControlData(cd)
		if !ok || pos.InRecovery || pos.Timeline != 1 {
			t.Fatalf("position of the former primary: %+v %v (%s)", pos, ok, cd.ClusterState)
		}
		if pos.CheckpointEnd, err = a.p.CheckpointEnd(ctx, pos.Timeline, pos.LSN); err != nil || pos.CheckpointEnd <= pos.LSN {
			t.Errorf("CheckpointEnd = %v, %v (checkpoint at %v)", pos.CheckpointEnd, err, pos.LSN)
		}
		need, why := NeedsRewind(pos, tl, hist)
		if !need {
			t.Fatalf("NeedsRewind = false (%s) for a diverged former primary", why)
		}
		if err := a.p.CanRewind(ctx); err != nil {
			t.Fatalf("CanRewind: %v", err)
		}
		up := b.upstream()
		up.SlotName = a.p.MemberSlot()
		if err := a.p.Rewind(ctx, up); err != nil {
			t.Fatalf("Rewind: %v", err)
		}
		if !a.p.HasBackupLabel() {
			t.Error("no backup_label after pg_rewind")
		}
		conf, _ := os.ReadFile(filepath.Join(a.p.DataDir(), confFile))
		if !strings.Contains(string(conf), "port = '"+strconv.Itoa(a.port)+"'") || !strings.Contains(string(conf), "port="+strconv.Itoa(b.port)) {
			t.Errorf("postgresql.conf after rewind:\n%s", conf)
		}
		if err := a.p.Start(ctx, 0); err != nil {
			t.Fatalf("Start after rewind: %v", err)
		}
		waitStreaming(t, b, a)
		waitCaughtUp(t, b, a)
		if got := sql(t, a, "SELECT string_agg(origin, ',' ORDER BY id) FROM t"); got != "a,b" {
			t.Errorf("rows on the rewound node: %q (want the new primary's rows only)", got)
		}
		if o := observe(t, a); o.Timeline != 2 {
			t.Errorf("rewound node timeline %d", o.Timeline)
		}
	})

	t.Run("sigkill_seen_at_once", func(t *testing.T) {
		pm := a.p.Postmaster()
		kids := reaper.Children(pm.Pid())
		if len(kids) == 0 {
			t.Fatal("the postmaster has no children")
		}
		start := time.Now()
		if err := syscall.Kill(pm.Pid(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		select {
		case <-a.p.Exited():
		case <-time.After(time.Second):
			t.Fatal("Exited did not fire within a second of SIGKILL")
		}
		t.Logf("exit seen after %s", time.Since(start))
		if st := pm.Status(); !st.Known || st.Signal != syscall.SIGKILL {
			t.Errorf("exit status %v", st)
		}
		if a.p.IsRunning() {
			t.Error("IsRunning after SIGKILL")
		}
		// The orphaned backends exit on their own and are reaped.
		poll.Eventually(t, 15*time.Second, "orphaned backends reaped", func() error {
			for _, k := range kids {
				if _, err := reaper.ReadStat(k); err == nil {
					st, _ := reaper.ReadStat(k)
					return fmt.Errorf("backend %d still in /proc (state %c, parent %d)", k, st.State, st.PPid)
				}
			}
			return nil
		})

		// Crash recovery on start.
		if err := a.p.Start(ctxT(t, time.Minute), 0); err != nil {
			t.Fatalf("Start after SIGKILL: %v", err)
		}
		waitStreaming(t, b, a)
	})

	t.Run("adopted_exit_seen", func(t *testing.T) {
		p2, err := New(a.p.Config(), testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		defer p2.Close()
		if ok, err := p2.Adopt(ctxT(t, 5*time.Second)); !ok || err != nil {
			t.Fatalf("Adopt = %v, %v", ok, err)
		}
		if err := p2.Stop(ctxT(t, time.Minute), StopOptions{Mode: StopFast}); err != nil {
			t.Fatalf("Stop through the adopted value: %v", err)
		}
		select {
		case <-a.p.Exited():
		case <-time.After(5 * time.Second):
			t.Fatal("the starting value did not see the exit")
		}
		if st := p2.Postmaster().Status(); st.Known {
			t.Errorf("adopted exit status should be unknown: %v", st)
		}
		if err := a.p.Start(ctxT(t, time.Minute), 0); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("switchover_needs_no_rewind", func(t *testing.T) {
		ctx := ctxT(t, 2*time.Minute)
		// a was just restarted: it must stream again before b stops, or
		// it never receives b's shutdown checkpoint.
		waitStreaming(t, b, a)
		// b (primary) stops cleanly; a receives its shutdown checkpoint and
		// is promoted: b can follow a without pg_rewind.
		if err := b.p.Stop(ctx, StopOptions{Mode: StopFast}); err != nil {
			t.Fatal(err)
		}
		cd, err := b.p.ControlData(ctx)
		if err != nil {
			t.Fatal(err)
		}
		poll.Eventually(t, 30*time.Second, "a replayed b's shutdown checkpoint", func() error {
			o, err := a.p.Observe(context.Background())
			if err != nil {
				return err
			}
			if o.ReplayedLSN <= cd.CheckpointLSN {
				return fmt.Errorf("replayed %s, checkpoint at %s", o.ReplayedLSN, cd.CheckpointLSN)
			}
			return nil
		})

		if err := a.p.Promote(ctx, true, 0); err != nil {
			t.Fatal(err)
		}
		if err := a.p.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		tl, hist, err := b.p.LeaderTimeline(ctx, a.upstream())
		if err != nil || tl != 3 {
			t.Fatalf("LeaderTimeline = %d %+v %v", tl, hist, err)
		}
		pos, ok := PositionFromControlData(cd)
		if !ok {
			t.Fatalf("no position in %q", cd.ClusterState)
		}
		if pos.CheckpointEnd, err = b.p.CheckpointEnd(ctx, pos.Timeline, pos.LSN); err != nil {
			t.Fatal(err)
		}
		if need, why := NeedsRewind(pos, tl, hist); need {
			t.Fatalf("NeedsRewind after a clean switchover: %s (position %+v, history %+v)", why, pos, hist)
		}
		if _, err := a.p.EnsurePhysicalSlots(ctx, []string{cluster.SlotName(b.name)}); err != nil {
			t.Fatal(err)
		}
		// b starts as a standby without upstream, then follows a on reload.
		if err := b.p.Configure(Setup{Standby: true}); err != nil {
			t.Fatal(err)
		}
		if err := b.p.Start(ctx, 0); err != nil {
			t.Fatal(err)
		}
		if o := observe(t, b); !o.InRecovery || o.WALReceiver != nil {
			t.Errorf("standby without upstream: %+v", o)
		}
		up := a.upstream()
		up.SlotName = b.p.MemberSlot()
		if err := b.p.Follow(ctx, &up); err != nil {
			t.Fatal(err)
		}
		waitStreaming(t, a, b)
	})

	// From here on a is the primary and b its standby.
	prim, stby := a, b

	t.Run("stop_modes", func(t *testing.T) {
		ctx := ctxT(t, 2*time.Minute)
		// A client session holds up a smart shutdown.
		cfg, _ := stby.p.localConfig()
		client, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close(context.Background())
		err = stby.p.Stop(ctx, StopOptions{Mode: StopSmart, Timeout: 500 * time.Millisecond})
		if !errors.Is(err, ErrStopTimeout) {
			t.Fatalf("smart stop with a client: %v", err)
		}
		if !stby.p.IsRunning() {
			t.Fatal("smart stop with a client did not wait")
		}
		if err := stby.p.Stop(ctx, StopOptions{Mode: StopFast}); err != nil {
			t.Fatalf("fast stop: %v", err)
		}
		if cd, _ := stby.p.ControlData(ctx); cd.ClusterState != StateShutDownInRecovery {
			t.Errorf("after a fast stop of a standby: %q", cd.ClusterState)
		}

		// A primary stopped immediately needs crash recovery.
		if err := prim.p.Stop(ctx, StopOptions{Mode: StopImmediate}); err != nil {
			t.Fatalf("immediate stop: %v", err)
		}
		if cd, _ := prim.p.ControlData(ctx); cd.CleanShutdown() {
			t.Errorf("after an immediate stop: %q", cd.ClusterState)
		}
		if err := prim.p.CrashRecovery(ctx); err != nil {
			t.Fatalf("CrashRecovery: %v", err)
		}
		if cd, _ := prim.p.ControlData(ctx); cd.ClusterState != StateShutDown {
			t.Errorf("after crash recovery: %q", cd.ClusterState)
		}
		if err := prim.p.Stop(ctx, StopOptions{Mode: StopFast}); err != nil {
			t.Errorf("stopping a stopped server: %v", err)
		}

		// A start that is still going on, then ready.
		if err := prim.p.Start(ctx, time.Millisecond); !errors.Is(err, ErrStillStarting) {
			t.Errorf("Start with 1ms: %v", err)
		}
		if err := prim.p.WaitReady(ctx, 0); err != nil {
			t.Fatalf("WaitReady: %v", err)
		}
		// Escalation: a smart stop blocked by a client, killed on timeout.
		cfgB, _ := prim.p.localConfig()
		clientB, err := pgx.ConnectConfig(ctx, cfgB)
		if err != nil {
			t.Fatal(err)
		}
		defer clientB.Close(context.Background())
		if err := prim.p.Stop(ctx, StopOptions{Mode: StopSmart, Timeout: 300 * time.Millisecond, KillOnTimeout: true}); err != nil {
			t.Fatalf("smart stop with kill on timeout: %v", err)
		}
		if st := prim.p.Postmaster().Status(); st.Signal != syscall.SIGKILL {
			t.Errorf("escalated stop status: %v", st)
		}
	})

	t.Run("start_failure_has_log", func(t *testing.T) {
		ctx := ctxT(t, time.Minute)
		cfg := prim.p.Config()
		cfg.Parameters["shared_buffers"] = "lots"
		if err := prim.p.Reconfigure(cfg); err != nil {
			t.Fatal(err)
		}
		if err := prim.p.Configure(Setup{}); err != nil {
			t.Fatal(err)
		}
		err := prim.p.Start(ctx, 0)
		var se *StartError
		if !errors.As(err, &se) || se.Status.Code == 0 || !strings.Contains(strings.Join(se.LogTail, "\n"), "shared_buffers") {
			t.Fatalf("Start with a bad setting: %v", err)
		}
		t.Logf("start failure: %v", err)
	})

	t.Run("remove_data_dir", func(t *testing.T) {
		ctx := ctxT(t, time.Minute)
		// the standby's upstream is stopped: it starts without its upstream.
		if err := stby.p.Start(ctx, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := stby.p.RemoveDataDir(ctx, false); err == nil {
			t.Error("RemoveDataDir while running succeeded")
		}
		moved, err := prim.p.RemoveDataDir(ctx, true)
		if err != nil || moved == "" {
			t.Fatalf("RemoveDataDir(move aside) = %q, %v", moved, err)
		}
		if st, _ := dirState(moved); st != DirInitialized {
			t.Errorf("moved dir is %v", st)
		}
		if st, _ := prim.p.DataDirState(); st != DirAbsent {
			t.Errorf("data dir after moving aside: %v", st)
		}
	})
}

func TestIntegrationForeignDataDir(t *testing.T) {
	dir := testenv.ForeignDir(t)
	n := newNode(t, "foreign", func(c *Config) { c.DataDir = dir })
	err := n.p.CheckDataDir()
	var de *DataDirError
	if !errors.As(err, &de) {
		t.Fatalf("CheckDataDir on %s: %v", dir, err)
	}
	msg := err.Error()
	if !strings.Contains(msg, dir) || !strings.Contains(msg, "owned by another user") || !strings.Contains(msg, "root") || !strings.Contains(msg, testenv.PostgresUser) {
		t.Errorf("error does not name the path, the owner and the current user: %s", msg)
	}
	if err := n.p.Start(ctxT(t, 10*time.Second), time.Second); !errors.As(err, &de) {
		t.Errorf("Start on a foreign data dir: %v", err)
	}
	if err := n.p.Bootstrap(ctxT(t, 10*time.Second)); err == nil {
		t.Error("Bootstrap on a foreign data dir succeeded")
	}
	t.Logf("error: %s", msg)
}
