//go:build integration

package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPgBackRestBootstrap: a new cluster (another scope) is bootstrapped
// by the pgbackrest bootstrap method ([bootstrap] method = "pgbackrest")
// from the backup and archive of a first cluster, to a point in time: it
// holds exactly the rows committed before the target, its replica clones
// it as usual, and it does not archive into the first cluster's stanza.
func TestPgBackRestBootstrap(t *testing.T) {
	t.Parallel()
	start := time.Now()
	repo := newPgbrRepo(t)
	src := startCluster(t, clusterOpts{members: 1, pgParameters: archiveParameters, edit: repo.archiving})
	old := src.waitHealthy(t, formTimeout)
	t.Logf("the source cluster formed in %v", time.Since(start).Round(time.Millisecond))
	old.exec(t, "create table e2e (id serial primary key, note text)")
	old.exec(t, "insert into e2e (note) values ('in-backup')")
	repo.backup(t, old)

	// A commit, the target, a commit after it; the WAL of both archived.
	old.exec(t, "insert into e2e (note) values ('before-target')")
	v, err := old.query(`select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'`)
	if err != nil || len(v) != 1 {
		t.Fatalf("the target time: %v %v", v, err)
	}
	target := v[0]
	time.Sleep(time.Second) // commit time stamps well apart from the target
	old.exec(t, "insert into e2e (note) values ('after-target')")
	switchAndArchive(t, old)
	sysid, err := old.query("select system_identifier::text from pg_control_system()")
	if err != nil || len(sysid) != 1 {
		t.Fatalf("the source's system identifier: %v %v", sysid, err)
	}
	t.Logf("target %s", target)

	// The new cluster: no archiving of its own (it must not push into the
	// source's stanza); its members bootstrap from the source's backup.
	booted := time.Now()
	c := startCluster(t, clusterOpts{members: 2, edit: func(m *member) {
		m.lines = map[string][]string{
			"bootstrap": {`method = "pgbackrest"`},
			"bootstrap.pgbackrest": {
				fmt.Sprintf("stanza = %q", repo.stanza),
				fmt.Sprintf("config = %q", repo.conf),
				fmt.Sprintf(`recovery_conf = { recovery_target_time = %q, recovery_target_action = "promote" }`, target),
			},
		}
	}})
	leader := c.waitHealthy(t, formTimeout)
	t.Logf("the new cluster led by %s, healthy %v after its start", leader.name, time.Since(booted).Round(time.Millisecond))

	want := []string{"in-backup", "before-target"}
	for _, m := range c.m {
		m.waitNotes(t, want, opTimeout)
	}
	if got, err := leader.query("select system_identifier::text from pg_control_system()"); err != nil || len(got) != 1 || got[0] != sysid[0] {
		t.Errorf("the new cluster's system identifier %v (%v), want the source's %s: not restored from its backup", got, err, sysid[0])
	}
	if st := mustStatus(t, leader); st.Timeline < 2 {
		t.Errorf("the new cluster runs timeline %d, want a promotion at the target", st.Timeline)
	}
	if ok, err := leader.writable(); err != nil || !ok {
		t.Fatalf("%s: writable %v (%v)", leader.name, ok, err)
	}
	leader.exec(t, "insert into e2e (note) values ('new-cluster')")
	for _, m := range c.others(leader) {
		m.waitRow(t, "new-cluster", opTimeout)
	}
	if got, err := leader.query("show archive_mode"); err != nil || len(got) != 1 || got[0] != "off" {
		t.Errorf("the new cluster's archive_mode %v (%v), want off", got, err)
	}
	// Nothing of the new cluster's timeline reached the source's archive.
	if h, _ := filepath.Glob(filepath.Join(repo.dir, "repo", "archive", repo.stanza, "*", "00000002*")); len(h) > 0 {
		t.Errorf("the new cluster archived into the source's stanza: %q", h)
	}
	// The source still holds every row.
	old.waitNotes(t, []string{"in-backup", "before-target", "after-target"}, opTimeout)

	if l := leader.linesWith(0, "bootstrap plugin"); len(l) == 0 || !strings.Contains(l[0], "method=pgbackrest") {
		t.Errorf("%s did not log the bootstrap by the pgbackrest plugin: %q", leader.name, l)
	}
	for _, m := range c.m {
		m.assertNoCrash(t)
	}
	t.Logf("done in %v", time.Since(start).Round(time.Millisecond))
}
