//go:build integration

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/custos-ha/custos/testkit/poll"
)

// Looking at replication from outside: pg_stat_replication, slots, /sync,
// and the helpers the data safety scenarios share.

// startLeaderFirst starts the first member, waits until it holds the leader
// key as a running primary, then starts the others and waits for a healthy
// cluster: the scenarios whose members differ (tags) need to know who leads.
// The cluster must have been created with noStart.
func (c *testCluster) startLeaderFirst(t testing.TB) *member {
	t.Helper()
	first := c.m[0]
	first.start(t)
	poll.Eventually(t, formTimeout, first.name+" to bootstrap the cluster and lead it", func() error {
		v, err := c.dcs()
		if err != nil {
			return err
		}
		if v.leader() != first.name {
			return fmt.Errorf("leader key %q", v.leader())
		}
		st, err := first.status()
		if err != nil {
			return err
		}
		if st.Role != "primary" || st.State != "running" {
			return fmt.Errorf("role %q state %q", st.Role, st.State)
		}
		return nil
	})

	for _, m := range c.m[1:] {
		m.start(t)
	}
	if got := c.waitHealthy(t, formTimeout); got != first {
		t.Fatalf("%s leads, not %s", got.name, first.name)
	}
	return first
}

// setTags rewrites the member's [tags] section and reloads the agent
// (SIGHUP, as an operator would), then waits until its member key
// publishes published as its tags.
func (m *member) setTags(t testing.TB, published map[string]any, lines ...string) {
	t.Helper()
	m.tags = lines
	m.writeConfig(t)
	p := m.current()
	if p == nil || p.exited() {
		t.Fatalf("%s: no running agent to reload", m.name)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatalf("%s: SIGHUP: %v", m.name, err)
	}
	m.c.waitTags(t, m, published)
}

// waitTags waits until m's member key publishes exactly want as its tags.
func (c *testCluster) waitTags(t testing.TB, m *member, want map[string]any) {
	t.Helper()
	norm := map[string]any{}
	data, _ := json.Marshal(want)
	_ = json.Unmarshal(data, &norm)
	poll.Eventually(t, opTimeout, fmt.Sprintf("%s to publish tags %v", m.name, want), func() error {
		v, err := c.dcs()
		if err != nil {
			return err
		}
		got, _ := memberData(t, v, m.name)["tags"].(map[string]any)
		if got == nil {
			got = map[string]any{}
		}
		if !reflect.DeepEqual(got, norm) {
			return fmt.Errorf("tags %v", got)
		}
		return nil
	})

}

// patchConfig changes the dynamic configuration through PATCH /config on m
// and fails the test unless it is accepted.
func (m *member) patchConfig(t testing.TB, patch map[string]any) {
	t.Helper()
	a := m.mustCall(t, http.MethodPatch, "/config", patch, "", "")
	if a.code != http.StatusOK {
		t.Fatalf("PATCH /config %v: %d %s", patch, a.code, a.body)
	}
}

// rows runs one query and returns every row, each value as text (NULL is
// "").
func (m *member) rows(sql string, args ...any) ([][]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	conn, err := m.connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: connecting: %w", m.name, err)
	}
	defer conn.Close(context.Background())
	rs, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", m.name, sql, err)
	}
	var out [][]string
	for rs.Next() {
		vals, err := rs.Values()
		if err != nil {
			return nil, err
		}
		row := make([]string, len(vals))
		for i, v := range vals {
			if v != nil {
				row[i] = fmt.Sprint(v)
			}
		}
		out = append(out, row)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", m.name, sql, err)
	}
	return out, nil
}

// execNotices runs sql on its own connection and returns the notices and
// warnings the server sent. When cancelAfter is set and the statement still
// runs then, it is cancelled as a client does (a cancel request): a commit
// waiting for synchronous standbys then completes with a warning saying so.
func (m *member) execNotices(ctx context.Context, sql string, cancelAfter time.Duration) ([]string, error) {
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=postgres sslmode=disable connect_timeout=%d",
		m.pgPort, superuser, superuserPass, int(sqlTimeout/time.Second))
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	var notices []string
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		notices = append(notices, n.Severity+": "+n.Message)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: connecting: %w", m.name, err)
	}
	defer conn.Close(context.Background())
	finished := make(chan struct{})
	cancelled := make(chan struct{})
	go func() {
		defer close(cancelled)
		if cancelAfter <= 0 {
			return
		}
		select {
		case <-finished:
		case <-time.After(cancelAfter):
			cctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
			defer cancel()
			_ = conn.PgConn().CancelRequest(cctx)
		}
	}()
	_, err = conn.Exec(ctx, sql)
	close(finished)
	<-cancelled
	if err != nil {
		return notices, fmt.Errorf("%s: %s: %w", m.name, sql, err)
	}
	return notices, nil
}

// walReceiver is a replica's pg_stat_wal_receiver row.
type walReceiver struct {
	pid        int
	status     string
	senderPort int
	slot       string
}

func (m *member) walReceiver() (walReceiver, error) {
	rs, err := m.rows("select pid, status, sender_port, coalesce(slot_name, '') from pg_stat_wal_receiver")
	if err != nil {
		return walReceiver{}, err
	}
	if len(rs) != 1 {
		return walReceiver{}, fmt.Errorf("%s: no WAL receiver", m.name)
	}
	pid, _ := strconv.Atoi(rs[0][0])
	port, _ := strconv.Atoi(rs[0][2])
	return walReceiver{pid: pid, status: rs[0][1], senderPort: port, slot: rs[0][3]}, nil
}

// replicationRow is a pg_stat_replication row.
type replicationRow struct {
	state, syncState string
}

// replication returns the member's pg_stat_replication by application_name.
func (m *member) replication() (map[string]replicationRow, error) {
	rs, err := m.rows("select application_name, state, sync_state from pg_stat_replication")
	if err != nil {
		return nil, err
	}
	out := map[string]replicationRow{}
	for _, r := range rs {
		out[r[0]] = replicationRow{state: r[1], syncState: r[2]}
	}
	return out, nil
}

// slot is a pg_replication_slots row; lsn is restart_lsn for a physical
// slot, confirmed_flush_lsn for a logical one, in bytes (-1 when NULL).
type slot struct {
	kind, plugin, database string
	active                 bool
	lsn                    int64
}

// slots returns the member's replication slots by name.
func (m *member) slots() (map[string]slot, error) {
	rs, err := m.rows(`select slot_name, slot_type, coalesce(plugin, ''), coalesce(database, ''), active,
		coalesce((case when slot_type = 'logical' then confirmed_flush_lsn else restart_lsn end - '0/0'::pg_lsn)::bigint, -1)
		from pg_replication_slots where not temporary`)
	if err != nil {
		return nil, err
	}
	out := map[string]slot{}
	for _, r := range rs {
		lsn, _ := strconv.ParseInt(r[5], 10, 64)
		out[r[0]] = slot{kind: r[1], plugin: r[2], database: r[3], active: r[4] == "true", lsn: lsn}
	}
	return out, nil
}

// slotNames are the keys of a slot map, sorted.
func slotNames(s map[string]slot) []string {
	out := make([]string, 0, len(s))
	for k := range s {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// walLSN is the member's current WAL position in bytes: the write position
// on a primary, the replay position on a replica.
func (m *member) walLSN() (int64, error) {
	v, err := m.query(`select (case when pg_is_in_recovery() then pg_last_wal_replay_lsn() else pg_current_wal_lsn() end - '0/0'::pg_lsn)::bigint`)
	if err != nil {
		return 0, err
	}
	if len(v) != 1 {
		return 0, fmt.Errorf("%s: WAL position %v", m.name, v)
	}
	return strconv.ParseInt(v[0], 10, 64)
}

// syncKey is the cluster's /sync key, decoded.
type syncKey struct {
	Leader      string  `json:"leader"`
	SyncStandby *string `json:"sync_standby"`
}

// standbys are the names /sync lists, sorted.
func (s syncKey) standbys() []string {
	if s.SyncStandby == nil || *s.SyncStandby == "" {
		return nil
	}
	out := strings.Split(*s.SyncStandby, ",")
	slices.Sort(out)
	return out
}

// sync reads /sync; ok is false when there is none.
func (c *testCluster) sync() (s syncKey, ok bool, err error) {
	v, err := c.dcs()
	if err != nil {
		return s, false, err
	}
	kv := v.kv["sync"]
	if kv == nil {
		return s, false, nil
	}
	if err := json.Unmarshal([]byte(kv.Value), &s); err != nil {
		return s, true, fmt.Errorf("/sync is not JSON: %v: %s", err, kv.Value)
	}
	return s, true, nil
}

// waitSync waits until primary runs synchronous replication with n
// synchronous standbys and returns their names: /sync names primary as the
// leader and lists n members, synchronous_standby_names names exactly them
// (Patroni's rendering), and pg_stat_replication shows each as a streaming
// sync standby. When want is set, the standbys must be those.
func (c *testCluster) waitSync(t testing.TB, primary *member, n int, want ...string) []string {
	t.Helper()
	var names []string
	poll.Eventually(t, opTimeout, fmt.Sprintf("%s to have %d synchronous standby(s) %v", primary.name, n, want), func() error {
		s, ok, err := c.sync()
		if err != nil {
			return err
		}
		if !ok || s.Leader != primary.name {
			return fmt.Errorf("/sync %+v (present %v)", s, ok)
		}
		names = s.standbys()
		if len(names) != n || len(want) > 0 && !slices.Equal(names, sorted(want)) {
			return fmt.Errorf("/sync lists %v", names)
		}
		ssn, err := primary.query("show synchronous_standby_names")
		if err != nil {
			return err
		}
		if wantSSN := renderSSN(names); len(ssn) != 1 || ssn[0] != wantSSN {
			return fmt.Errorf("synchronous_standby_names %v, want %q", ssn, wantSSN)
		}
		rep, err := primary.replication()
		if err != nil {
			return err
		}
		for _, name := range names {
			if r := rep[name]; r.state != "streaming" || r.syncState != "sync" {
				return fmt.Errorf("pg_stat_replication of %s: %+v", name, r)
			}
		}
		for name, r := range rep {
			if !slices.Contains(names, name) && r.syncState == "sync" {
				return fmt.Errorf("%s is synchronous but not in /sync %v", name, names)
			}
		}
		return nil
	})

	return names
}

// renderSSN is synchronous_standby_names as Patroni writes it for names.
func renderSSN(names []string) string {
	if len(names) == 1 {
		return names[0]
	}
	return fmt.Sprintf("%d (%s)", len(names), strings.Join(sorted(names), ","))
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// killPrimary SIGKILLs old's agent and postmaster and waits until another
// member holds the leader key and accepts writes; it returns that member.
func (c *testCluster) killPrimary(t testing.TB, old *member) *member {
	t.Helper()
	old.kill(t, agentAndPostmaster, syscall.SIGKILL)
	return c.waitWritableLeader(t, old)
}

// waitWritableLeader waits until a member other than old holds the leader
// key and accepts writes, and returns it.
func (c *testCluster) waitWritableLeader(t testing.TB, old *member) *member {
	t.Helper()
	var next *member
	poll.Eventually(t, failoverTimeout, "a new leader running as primary", func() error {
		v, err := c.dcs()
		if err != nil {
			return err
		}
		name := v.leader()
		if name == "" || name == old.name {
			return fmt.Errorf("leader key %q", name)
		}
		next = c.member(name)
		if ok, err := next.writable(); err != nil || !ok {
			return fmt.Errorf("%s holds the key; writable %v %v", name, ok, err)
		}
		return nil
	})

	return next
}

// sameWAL waits until every running member's WAL position is the same (no
// write in flight): a race between replicas is then decided by their tags
// alone.
func (c *testCluster) sameWAL(t testing.TB) {
	t.Helper()
	poll.Eventually(t, opTimeout, "every member at the same WAL position", func() error {
		var first int64 = -1
		var seen []string
		for _, m := range c.m {
			if !m.running() {
				continue
			}
			lsn, err := m.walLSN()
			if err != nil {
				return err
			}
			seen = append(seen, fmt.Sprintf("%s %d", m.name, lsn))
			if first < 0 {
				first = lsn
			} else if lsn != first {
				return errors.New(strings.Join(seen, ", "))
			}
		}
		return nil
	})

}
