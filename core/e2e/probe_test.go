//go:build integration

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/custos-ha/custos/testkit/poll"
)

// Looking at a cluster from outside: its keys in etcd, the REST API, SQL.

// ---- DCS ----

// dcsView is the cluster's keys in etcd at one revision (or in the
// cluster's opts.dcs, at its index).
type dcsView struct {
	rev int64
	kv  map[string]*keyValue
}

type keyValue struct {
	Value          string
	Lease          int64
	ModRevision    int64
	CreateRevision int64
	// Meta is what another DCS keeps with the key: its Consul session, the
	// annotations of its Kubernetes object.
	Meta map[string]string
}

func (v dcsView) keys() []string {
	var out []string
	for k := range v.kv {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// leader is the leader key's value, "" when there is none.
func (v dcsView) leader() string {
	if kv := v.kv["leader"]; kv != nil {
		return kv.Value
	}
	return ""
}

// dcs reads the cluster's keys (relative to the scope) from etcd or the
// cluster's own DCS.
func (c *testCluster) dcs() (dcsView, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c.opts.dcs != nil {
		return c.opts.dcs.read(ctx, c.scope)
	}
	resp, err := env.kv.Get(ctx, c.prefix(), clientv3.WithPrefix())
	if err != nil {
		return dcsView{}, fmt.Errorf("reading %s from etcd: %w", c.prefix(), err)
	}
	v := dcsView{rev: resp.Header.Revision, kv: map[string]*keyValue{}}
	for _, kv := range resp.Kvs {
		v.kv[strings.TrimPrefix(string(kv.Key), c.prefix())] = &keyValue{
			Value: string(kv.Value), Lease: kv.Lease, ModRevision: kv.ModRevision, CreateRevision: kv.CreateRevision,
		}
	}
	return v, nil
}

// mustDCS is dcs for the test goroutine.
func (c *testCluster) mustDCS(t testing.TB) dcsView {
	t.Helper()
	v, err := c.dcs()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// ---- REST ----

// status is the part of GET /patroni the tests look at.
type status struct {
	State            string `json:"state"`
	Role             string `json:"role"`
	Timeline         int    `json:"timeline"`
	ReplicationState string `json:"replication_state"`
	XLog             *struct {
		Location         *int64 `json:"location"`
		ReceivedLocation *int64 `json:"received_location"`
		ReplayedLocation *int64 `json:"replayed_location"`
	} `json:"xlog"`
	Custos *struct {
		Reason   string   `json:"reason"`
		Problems []string `json:"problems"`
	} `json:"custos"`
	raw string
}

func (s status) problems() []string {
	if s.Custos == nil {
		return nil
	}
	return s.Custos.Problems
}

var httpClient = &http.Client{Timeout: httpTimeout}

// get does GET path on the member's REST API.
func (m *member) get(path string) (int, []byte, error) {
	resp, err := httpClient.Get(fmt.Sprintf("http://127.0.0.1:%d%s", m.apiPort, path))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// status is GET /patroni.
func (m *member) status() (status, error) {
	code, body, err := m.get("/patroni")
	if err != nil {
		return status{}, fmt.Errorf("%s: GET /patroni: %w", m.name, err)
	}
	if code != http.StatusOK {
		return status{}, fmt.Errorf("%s: GET /patroni = %d %s", m.name, code, body)
	}
	var s status
	if err := json.Unmarshal(body, &s); err != nil {
		return status{}, fmt.Errorf("%s: GET /patroni: %w: %s", m.name, err, body)
	}
	s.raw = string(body)
	return s, nil
}

// rawRequest sends `METHOD path HTTP/1.0` over a plain TCP connection, as
// HAProxy does, and returns every byte of the answer.
func (m *member) rawRequest(method, path string) (string, error) {
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", m.apiPort), httpTimeout)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(httpTimeout))
	if _, err := fmt.Fprintf(conn, "%s %s HTTP/1.0\r\n\r\n", method, path); err != nil {
		return "", err
	}
	out, err := io.ReadAll(conn)
	return string(out), err
}

// ---- SQL ----

// connect opens a superuser connection to the member's PostgreSQL.
func (m *member) connect(ctx context.Context) (*pgx.Conn, error) {
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=postgres sslmode=disable connect_timeout=%d",
		m.pgPort, superuser, superuserPass, int(sqlTimeout/time.Second))
	return pgx.Connect(ctx, dsn)
}

// query runs one query and returns the first column of every row as text.
func (m *member) query(sql string, args ...any) ([]string, error) {
	return m.queryWithin(sqlTimeout, sql, args...)
}

func (m *member) queryWithin(timeout time.Duration, sql string, args ...any) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := m.connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: connecting: %w", m.name, err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", m.name, sql, err)
	}
	var out []string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, err
		}
		if len(vals) > 0 {
			out = append(out, fmt.Sprint(vals[0]))
		} else {
			out = append(out, "")
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", m.name, sql, err)
	}
	return out, nil
}

// exec runs statements on the member, failing the test on error.
func (m *member) exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	if _, err := m.query(sql, args...); err != nil {
		t.Fatal(err)
	}
}

// writable reports whether the member's PostgreSQL answers and is not in
// recovery.
func (m *member) writable() (bool, error) {
	return m.writableWithin(sqlTimeout)
}

func (m *member) writableWithin(timeout time.Duration) (bool, error) {
	v, err := m.queryWithin(timeout, "select pg_is_in_recovery()")
	if err != nil {
		return false, err
	}
	return len(v) == 1 && v[0] == "false", nil
}

// ---- cluster states ----
// waitHealthy waits until the cluster has a leader running as primary and
// every other member whose agent runs streams from it on the same
// timeline, and returns the leader.
func (c *testCluster) waitHealthy(t testing.TB, timeout time.Duration) *member {
	t.Helper()
	var leader *member
	poll.Eventually(t, timeout, "a primary and streaming replicas", func() error {
		var err error
		leader, err = c.healthy()
		return err
	})

	return leader
}

// healthy checks the state waitHealthy waits for.
func (c *testCluster) healthy() (*member, error) {
	v, err := c.dcs()
	if err != nil {
		return nil, err
	}
	name := v.leader()
	if name == "" {
		return nil, errors.New("no leader key")
	}
	leader := c.member(name)
	st, err := leader.status()
	if err != nil {
		return nil, err
	}
	if st.Role != "primary" || st.State != "running" {
		return nil, fmt.Errorf("leader %s: role %q state %q", name, st.Role, st.State)
	}
	for _, m := range c.others(leader) {
		if !m.running() {
			continue
		}
		rs, err := m.status()
		if err != nil {
			return nil, err
		}
		if rs.Role != "replica" || rs.State != "running" || rs.ReplicationState != "streaming" {
			return nil, fmt.Errorf("%s: role %q state %q replication %q", m.name, rs.Role, rs.State, rs.ReplicationState)
		}
		if rs.Timeline != st.Timeline {
			return nil, fmt.Errorf("%s: timeline %d, leader's %d", m.name, rs.Timeline, st.Timeline)
		}
	}
	return leader, nil
}

// waitRow waits until the member's table e2e holds a row with note.
func (m *member) waitRow(t testing.TB, note string, timeout time.Duration) {
	t.Helper()
	poll.Eventually(t, timeout, fmt.Sprintf("row %q on %s", note, m.name), func() error {
		v, err := m.query("select count(*) from e2e where note = $1", note)
		if err != nil {
			return err
		}
		if len(v) != 1 || v[0] != "1" {
			return fmt.Errorf("count %v", v)
		}
		return nil
	})

}

// guardSinglePrimary samples every member until the end of the test and
// fails it if at any sample two PostgreSQL servers of the cluster accept
// writes (pg_is_in_recovery() false) at once.
func (c *testCluster) guardSinglePrimary(t *testing.T) {
	stop := make(chan struct{})
	done := make(chan struct{})
	var violations []string
	samples := 0
	go func() {
		defer close(done)
		tick := time.NewTicker(guardSample)
		defer tick.Stop()
		for {
			var (
				mu       sync.Mutex
				wg       sync.WaitGroup
				writable []string
			)
			for _, m := range c.m {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if ok, err := m.writableWithin(guardTimeout); err == nil && ok {
						role := "?"
						if st, err := m.status(); err == nil {
							role = st.Role
						}
						mu.Lock()
						writable = append(writable, fmt.Sprintf("%s (REST role %s)", m.name, role))
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			samples++
			if len(writable) > 1 {
				violations = append(violations, fmt.Sprintf("%s: %s", time.Now().Format("15:04:05.000"), strings.Join(writable, ", ")))
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		if len(violations) > 0 {
			t.Errorf("two primaries at once in %d of %d samples:\n%s", len(violations), samples, strings.Join(violations, "\n"))
		} else {
			t.Logf("never two primaries: %d samples", samples)
		}
	})
}

// recorder keeps what a goroutine of the test observes, until it is
// stopped or the test ends.
type recorder[T any] struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	items  []T
}

// record runs observe in a goroutine; observe passes each observation to
// add and returns once ctx ends.
func record[T any](t testing.TB, observe func(ctx context.Context, add func(T))) *recorder[T] {
	ctx, cancel := context.WithCancel(context.Background())
	r := &recorder[T]{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		observe(ctx, func(v T) {
			r.mu.Lock()
			r.items = append(r.items, v)
			r.mu.Unlock()
		})
	}()
	t.Cleanup(r.stop)
	return r
}

// stop ends the observation; it may be called more than once.
func (r *recorder[T]) stop() {
	r.cancel()
	<-r.done
}

// snapshot returns what was observed so far, in order.
func (r *recorder[T]) snapshot() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.items)
}

// leaderWatch records the changes of the cluster's leader key from the
// current revision on.
type leaderWatch struct{ *recorder[leaderEvent] }

type leaderEvent struct {
	at      time.Time
	deleted bool
	value   string
	lease   int64
	// prevValue and prevLease are the value deleted or overwritten (its
	// holder) and its lease.
	prevValue string
	prevLease int64
	// hook is what onEvent returned for this event.
	hook string
}

// watchLeader starts recording, in the etcd the cluster runs on; onEvent,
// when set, runs in the watch's goroutine the moment an event arrives and
// its result is kept with it.
func (c *testCluster) watchLeader(t *testing.T, fromRev int64, onEvent func(leaderEvent) string) *leaderWatch {
	kv := c.etcd(t)
	return &leaderWatch{record(t, func(ctx context.Context, add func(leaderEvent)) {
		for resp := range kv.Watch(ctx, c.prefix()+"leader", clientv3.WithRev(fromRev), clientv3.WithPrevKV()) {
			for _, ev := range resp.Events {
				e := leaderEvent{at: time.Now(), deleted: ev.Type == clientv3.EventTypeDelete, value: string(ev.Kv.Value), lease: ev.Kv.Lease}
				if ev.PrevKv != nil {
					e.prevValue, e.prevLease = string(ev.PrevKv.Value), ev.PrevKv.Lease
				}
				if onEvent != nil {
					e.hook = onEvent(e)
				}
				add(e)
			}
		}
	})}
}

// etcd is the client of the etcd the cluster runs on: the shared one, or
// its own (newEtcdDCS).
func (c *testCluster) etcd(t testing.TB) *clientv3.Client {
	t.Helper()
	switch d := c.opts.dcs.(type) {
	case nil:
		return env.kv
	case *etcdDCS:
		return d.kv
	}
	t.Fatalf("the cluster runs on %T, not etcd", c.opts.dcs)
	return nil
}

// deletedFrom returns the first event after since in which the leader key
// held by holder went away; ok is false when there was none.
func (w *leaderWatch) deletedFrom(holder string, since time.Time) (leaderEvent, bool) {
	for _, e := range w.snapshot() {
		if e.deleted && e.prevValue == holder && !e.at.Before(since) {
			return e, true
		}
	}
	return leaderEvent{}, false
}

// createdAfter returns the first event after since that gave the leader
// key to someone other than holder.
func (w *leaderWatch) createdAfter(holder string, since time.Time) (leaderEvent, bool) {
	for _, e := range w.snapshot() {
		if !e.deleted && e.value != holder && !e.at.Before(since) {
			return e, true
		}
	}
	return leaderEvent{}, false
}

// firstDelete is when the watch first saw the leader key deleted, zero if
// it never did.
func (w *leaderWatch) firstDelete() time.Time {
	for _, e := range w.snapshot() {
		if e.deleted {
			return e.at
		}
	}
	return time.Time{}
}

// leaseTTL is the remaining time to live of an etcd lease, negative when it
// is gone.
func leaseTTL(id int64) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := env.kv.TimeToLive(ctx, clientv3.LeaseID(id))
	if err != nil {
		return 0, err
	}
	return time.Duration(resp.TTL) * time.Second, nil
}

// ---- tools ----
// runTool runs an external program and returns its combined output; it
// fails the test when the program is missing, with what to install.
func runTool(t testing.TB, pkg string, stdin []byte, name string, args ...string) (string, error) {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: install the Debian package %s (apt-get install %s)", name, pkg, pkg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	return out.String(), err
}

// lines returns the non-empty lines of s.
func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}
