//go:build integration

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-ha/custos/testkit/poll"
)

// The pgBackRest scenarios: a cluster archives its WAL to a pgBackRest
// repository on the local file system (archive-push), the test takes a
// full backup as an operator would, and members are then created from
// that backup by the pgbackrest replica method, with or without a leader
// running.

// pgbrSocketDir is where the members' PostgreSQL put their Unix sockets
// (the compiled-in default of the packaged PostgreSQL; the harness does
// not change it): pgbackrest backup connects there.
const pgbrSocketDir = "/var/run/postgresql"

// pgbrTimeout bounds one pgbackrest command run by the test.
const pgbrTimeout = 2 * time.Minute

// pgbrRepo is a pgBackRest configuration file and its posix repository,
// log and lock directories in a temporary directory the agents' user owns.
type pgbrRepo struct {
	dir    string
	conf   string
	stanza string
}

// newPgbrRepo makes the repository of one stanza. It is removed at the end
// of the test (after the clusters, whose clean-ups run first when the
// repository is made before them), kept when the test fails.
func newPgbrRepo(t *testing.T) *pgbrRepo {
	t.Helper()
	dir, err := os.MkdirTemp("", "custos-pgbr-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kept the pgBackRest repository %s for inspection", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	if err := os.Chmod(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	chownToAgent(t, dir)
	r := &pgbrRepo{dir: dir, conf: filepath.Join(dir, "pgbackrest.conf"), stanza: "e2e"}
	for _, sub := range []string{"repo", "log", "lock"} {
		p := filepath.Join(dir, sub)
		if err := os.Mkdir(p, 0o750); err != nil {
			t.Fatal(err)
		}
		chownToAgent(t, p)
	}
	// Compression off and an immediate checkpoint keep the backup short;
	// pg1-path and pg1-port are given on each command line (every member
	// archives its own WAL; the backup reads the leader).
	conf := strings.Join([]string{
		"[global]",
		"repo1-path=" + filepath.Join(dir, "repo"),
		"log-path=" + filepath.Join(dir, "log"),
		"lock-path=" + filepath.Join(dir, "lock"),
		"log-level-file=detail",
		"compress-type=none",
		"start-fast=y",
		"archive-timeout=60",
		"",
		"[" + r.stanza + "]",
		"pg1-socket-path=" + pgbrSocketDir,
		"",
	}, "\n")
	if err := os.WriteFile(r.conf, []byte(conf), 0o640); err != nil {
		t.Fatal(err)
	}
	chownToAgent(t, r.conf)
	return r
}

// run runs pgbackrest as the agents' user against member m's PostgreSQL
// and returns its output.
func (r *pgbrRepo) run(t testing.TB, m *member, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), pgbrTimeout)
	defer cancel()
	all := append([]string{"--config=" + r.conf, "--stanza=" + r.stanza,
		"--pg1-path=" + m.dataDir, fmt.Sprintf("--pg1-port=%d", m.pgPort), "--log-level-console=info"}, args...)
	cmd := exec.CommandContext(ctx, "pgbackrest", all...)
	cmd.Dir = r.dir
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + r.dir, "LANG=C.UTF-8", "PGUSER=" + superuser}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: env.cred}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pgbackrest %s: %v\n%s", strings.Join(all, " "), err, out)
	}
	t.Logf("pgbackrest %s: done in %v", args[len(args)-1], time.Since(start).Round(time.Millisecond))
	return string(out)
}

// backup creates the stanza from member m (the primary) and takes a full
// backup of it, as an operator would.
func (r *pgbrRepo) backup(t testing.TB, m *member) {
	t.Helper()
	r.run(t, m, "stanza-create")
	r.run(t, m, "--type=full", "backup")
}

// archiveCommand is member m's archive_command: archive-push of its own
// data directory's WAL (pgbackrest reads a relative %p under pg1-path).
func (r *pgbrRepo) archiveCommand(m *member) string {
	return fmt.Sprintf("pgbackrest --config=%s --stanza=%s --pg1-path=%s archive-push %%p", r.conf, r.stanza, m.dataDir)
}

// restoreCommand is member m's restore_command: archive-get from the
// repository.
func (r *pgbrRepo) restoreCommand(m *member) string {
	return fmt.Sprintf(`pgbackrest --config=%s --stanza=%s --pg1-path=%s archive-get %%f "%%p"`, r.conf, r.stanza, m.dataDir)
}

// archiving is the part of a member's configuration that makes it archive
// to the repository and, as a standby, fetch WAL from it: archive_mode in
// the dynamic configuration (pgParameters), archive_command and
// restore_command in the member's own file.
func (r *pgbrRepo) archiving(m *member) {
	if m.lines == nil {
		m.lines = map[string][]string{}
	}
	m.lines["postgresql.parameters"] = append(m.lines["postgresql.parameters"],
		fmt.Sprintf("archive_command = %q", r.archiveCommand(m)))
	m.extra = append(m.extra, "[postgresql.recovery_conf]", fmt.Sprintf("restore_command = %q", r.restoreCommand(m)))
}

// replicaMethod gives member m the pgbackrest replica method, tried in
// the order of methods.
func (r *pgbrRepo) replicaMethod(m *member, methods ...string) {
	if m.lines == nil {
		m.lines = map[string][]string{}
	}
	m.lines["postgresql"] = append(m.lines["postgresql"], "create_replica_methods = "+tomlList(methods))
	m.lines["postgresql.pgbackrest"] = []string{
		fmt.Sprintf("stanza = %q", r.stanza),
		fmt.Sprintf("config = %q", r.conf),
	}
}

// archiveParameters are the dynamic parameters of an archiving cluster.
var archiveParameters = []string{`archive_mode = "on"`}

func tomlList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// switchAndArchive closes the primary's current WAL segment and waits
// until it is in the archive: what was committed before is then in the
// repository.
func switchAndArchive(t testing.TB, m *member) {
	t.Helper()
	seg, err := m.query("select pg_walfile_name(pg_current_wal_lsn())")
	if err != nil || len(seg) != 1 {
		t.Fatalf("%s: current WAL segment: %v %v", m.name, seg, err)
	}
	m.exec(t, "select pg_switch_wal()")
	poll.Eventually(t, time.Minute, fmt.Sprintf("%s to archive %s", m.name, seg[0]), func() error {
		v, err := m.query("select coalesce(last_archived_wal, '') >= $1 from pg_stat_archiver", seg[0])
		if err != nil {
			return err
		}
		if len(v) != 1 || v[0] != "true" {
			f, _ := m.query("select coalesce(last_failed_wal, '') || ' ' || failed_count from pg_stat_archiver")
			return fmt.Errorf("not archived yet (last failure: %v)", f)
		}
		return nil
	})
}

// notes are the notes of table e2e on m, in insertion order.
func (m *member) notes() ([]string, error) {
	return m.query("select note from e2e order by id")
}

// waitNotes waits until m's table e2e holds exactly want.
func (m *member) waitNotes(t testing.TB, want []string, timeout time.Duration) {
	t.Helper()
	poll.Eventually(t, timeout, fmt.Sprintf("the rows %q on %s", want, m.name), func() error {
		got, err := m.notes()
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("rows %q", got)
		}
		return nil
	})
}

// replicaCreations are the "creating replica" lines the member logged
// since offset.
func (m *member) replicaCreations(offset int64) []string {
	var out []string
	for _, l := range m.logSince(offset) {
		if strings.Contains(l, "creating replica") {
			out = append(out, l)
		}
	}
	return out
}

// linesWith are the member's log lines since offset that contain s.
func (m *member) linesWith(offset int64, s string) []string {
	var out []string
	for _, l := range m.logSince(offset) {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

// TestPgBackRestReplica: a member added to a running cluster with
// create_replica_methods = ["pgbackrest", "basebackup"] is restored from
// the cluster's pgBackRest backup, not copied with pg_basebackup, and then
// streams from the leader, with what was written after the backup.
func TestPgBackRestReplica(t *testing.T) {
	t.Parallel()
	start := time.Now()
	repo := newPgbrRepo(t)
	c := startCluster(t, clusterOpts{
		members:      3,
		noStart:      true,
		pgParameters: archiveParameters,
		edit: func(m *member) {
			repo.archiving(m)
			if m.name == "node3" {
				repo.replicaMethod(m, "pgbackrest", "basebackup")
			}
		},
	})
	node1, node2, node3 := c.m[0], c.m[1], c.m[2]
	node1.start(t)
	poll.Eventually(t, formTimeout, "node1 to lead", func() error {
		if st, err := node1.status(); err != nil || st.Role != "primary" || st.State != "running" {
			return fmt.Errorf("%+v %v", st, err)
		}
		return nil
	})
	node2.start(t)
	if l := c.waitHealthy(t, formTimeout); l != node1 {
		t.Fatalf("%s leads, not node1", l.name)
	}
	t.Logf("two members formed in %v", time.Since(start).Round(time.Millisecond))

	node1.exec(t, "create table e2e (id serial primary key, note text)")
	node1.exec(t, "insert into e2e (note) values ('before-backup')")
	repo.backup(t, node1)
	node1.exec(t, "insert into e2e (note) values ('after-backup')")

	added := time.Now()
	node3.start(t)
	if l := c.waitHealthy(t, formTimeout); l != node1 {
		t.Fatalf("%s leads, not node1", l.name)
	}
	t.Logf("node3 restored and streaming %v after its start", time.Since(added).Round(time.Millisecond))
	node3.waitNotes(t, []string{"before-backup", "after-backup"}, opTimeout)
	// And what the leader writes from now on.
	node1.exec(t, "insert into e2e (note) values ('streamed')")
	node3.waitRow(t, "streamed", opTimeout)

	created := node3.replicaCreations(0)
	t.Logf("node3: %q", created)
	if len(created) != 1 || !strings.Contains(created[0], "method=pgbackrest") || !strings.Contains(created[0], "source=node1") {
		t.Errorf("node3's replica creations: %q, want one, with pgbackrest from node1", created)
	}
	if failed := node3.linesWith(0, "replica method failed"); len(failed) > 0 {
		t.Errorf("node3: a replica method failed: %q", failed)
	}
	if restored := node3.linesWith(0, "restore completed"); len(restored) == 0 {
		t.Errorf("node3 did not log the pgbackrest restore's completion")
	}

	// A re-clone keeps the data directory for the method that restores
	// over it (keep_data: pgbackrest restore --delta).
	offset := node3.logSize()
	ctlOK(t, c, "reinit", c.scope, node3.name, "--force")
	poll.Eventually(t, opTimeout, "node3 restored over its old data", func() error {
		if len(node3.linesWith(offset, "keeping the data directory")) == 0 || len(node3.linesWith(offset, "--delta")) == 0 {
			return fmt.Errorf("no delta restore logged yet")
		}
		return nil
	})
	node1.exec(t, "insert into e2e (note) values ('after the re-clone')")
	node3.waitRow(t, "after the re-clone", opTimeout)
	for _, m := range c.m {
		m.assertNoCrash(t)
	}
	t.Logf("done in %v", time.Since(start).Round(time.Millisecond))
}

// TestPgBackRestNoLeader: every member of an archiving cluster loses its
// data directory while the agents are down; started again with
// create_replica_methods = ["pgbackrest"] and no leader running, the
// members restore the backup without a source, replay the archive, race;
// one promotes, the other follows it, and the cluster holds what was in
// the backup and the archive.
func TestPgBackRestNoLeader(t *testing.T) {
	t.Parallel()
	start := time.Now()
	repo := newPgbrRepo(t)
	c := startCluster(t, clusterOpts{
		members:      2,
		timings:      shortTimings,
		pgParameters: archiveParameters,
		edit:         repo.archiving,
	})
	leader := c.waitHealthy(t, formTimeout)
	t.Logf("formed in %v", time.Since(start).Round(time.Millisecond))
	leader.exec(t, "create table e2e (id serial primary key, note text)")
	leader.exec(t, "insert into e2e (note) values ('in-backup')")
	repo.backup(t, leader)
	leader.exec(t, "insert into e2e (note) values ('in-archive')")
	switchAndArchive(t, leader)
	tl := mustStatus(t, leader).Timeline

	// The disaster: every agent and PostgreSQL stopped, every data
	// directory gone.
	c.stopAll()
	for _, m := range c.m {
		if m.running() || m.postmasterPID() != 0 {
			t.Fatalf("%s still runs after the stop", m.name)
		}
		if err := os.RemoveAll(m.dataDir); err != nil {
			t.Fatal(err)
		}
	}
	offsets := map[string]int64{}
	for _, m := range c.m {
		repo.replicaMethod(m, "pgbackrest")
		m.writeConfig(t)
		offsets[m.name] = m.logSize()
	}
	wiped := time.Now()
	for _, m := range c.m {
		m.start(t)
	}
	next := c.waitHealthy(t, formTimeout)
	t.Logf("%s leads %v after the restart of the wiped members", next.name, time.Since(wiped).Round(time.Millisecond))
	if ok, err := next.writable(); err != nil || !ok {
		t.Fatalf("%s: writable %v (%v)", next.name, ok, err)
	}
	if st := mustStatus(t, next); st.Timeline <= tl {
		t.Errorf("%s runs timeline %d, want a promotion past %d", next.name, st.Timeline, tl)
	}
	want := []string{"in-backup", "in-archive"}
	for _, m := range c.m {
		m.waitNotes(t, want, opTimeout)
	}
	next.exec(t, "insert into e2e (note) values ('after-restore')")
	for _, m := range c.others(next) {
		m.waitRow(t, "after-restore", opTimeout)
	}

	// The new leader was created without a source; every creation used
	// pgbackrest.
	created := next.replicaCreations(offsets[next.name])
	t.Logf("%s: %q", next.name, created)
	if len(created) == 0 || !strings.Contains(created[0], "method=pgbackrest") || !strings.Contains(created[0], "no_leader") {
		t.Errorf("%s's replica creations: %q, want one by pgbackrest without a source", next.name, created)
	}
	for _, m := range c.m {
		for _, l := range m.replicaCreations(offsets[m.name]) {
			if !strings.Contains(l, "method=pgbackrest") {
				t.Errorf("%s created its replica otherwise: %q", m.name, l)
			}
		}
		if restored := m.linesWith(offsets[m.name], "restore completed"); len(restored) == 0 {
			t.Errorf("%s did not log a pgbackrest restore's completion", m.name)
		}
		m.assertNoCrash(t)
	}
	t.Logf("done in %v", time.Since(start).Round(time.Millisecond))
}
