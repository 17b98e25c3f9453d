//go:build integration

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/custos-ha/custos/testkit/poll"
)

// zeroLossRounds is how many times TestZeroLoss kills the primary.
var zeroLossRounds = flag.Int("e2e.zeroloss-rounds", 20, "primaries TestZeroLoss kills")

const (
	// commitTimeout bounds one commit of the zero-loss writer; one that
	// takes longer is not acknowledged (its outcome is unknown).
	commitTimeout = 30 * time.Second
	// ackedBeforeKill is how many commits the writer must have had
	// acknowledged after the synchronous standby was confirmed before the
	// primary is killed: the kill lands among commits that waited for it.
	ackedBeforeKill = 50
)

// TestZeroLoss: synchronous_mode on, a client commits one row per
// transaction without pause and records every commit acknowledged to it;
// the primary's agent and postmaster are SIGKILLed, and once the
// synchronous standby (only it may) has taken over, every acknowledged row
// must be there. The killed member is started again so that the cluster
// stays three strong, and all of it is repeated zeroLossRounds times.
func TestZeroLoss(t *testing.T) {
	t.Parallel()
	// Short timings (ttl 6 s, loop_wait 1 s, retry_timeout 2 s) and an
	// etcd of its own: a round takes one lease expiry, not three.
	c := startCluster(t, clusterOpts{
		dcs:          newEtcdDCS(t),
		timings:      &timings{ttl: 6, loopWait: 1, retryTimeout: 2},
		bootstrapDCS: []string{"synchronous_mode = true"},
	})
	began := time.Now()
	primary := c.waitHealthy(t, formTimeout)
	c.guardSinglePrimary(t)
	primary.exec(t, "create table acks (id bigint primary key)")
	w := startWriter(c, 0)
	defer w.stop()
	lost := map[int64]bool{}
	// promoted is who took over in each round, in order; /history must
	// list them unless the cluster failed over on its own as well.
	var promoted []string
	extraFailover := false
	for round := 1; round <= *zeroLossRounds; round++ {
		settling := time.Now()
		standbys := c.waitSync(t, primary, 1)
		settled := time.Since(settling)
		from := w.ackedCount()
		poll.Eventually(t, opTimeout, fmt.Sprintf("%d commits acknowledged with %v synchronous", ackedBeforeKill, standbys), func() error {
			if n := w.ackedCount() - from; n < ackedBeforeKill {
				return fmt.Errorf("%d acknowledged; last error %v", n, w.lastError())
			}
			return nil
		})

		old := primary
		old.kill(t, agentAndPostmaster, syscall.SIGKILL)
		killed := time.Now()
		next := c.waitWritableLeader(t, old)
		took := time.Since(killed)
		promoted = append(promoted, next.name)
		if !slices.Contains(standbys, next.name) {
			t.Errorf("round %d: %s was promoted; only the synchronous standby %v may be", round, next.name, standbys)
		}
		acked := w.snapshot()
		missing, err := missingOn(next, acked)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range missing {
			lost[id] = true
		}
		if len(missing) > 0 {
			t.Errorf("round %d: %d of %d acknowledged commits are not on %s, e.g. %v", round, len(missing), len(acked), next.name, missing[:min(len(missing), 10)])
		}
		old.restart(t)
		rejoin := time.Now()
		if primary = c.waitHealthy(t, formTimeout); primary != next {
			// Not a loss: the next round checks the commits on whoever
			// leads, and only a synchronous standby may have taken over.
			t.Logf("round %d: %s leads now, not %s", round, primary.name, next.name)
			extraFailover = true
		}
		t.Logf("round %d: synchronous standby %v after %v; %s killed, %s primary after %v, %s back %v later; %d commits acknowledged so far, %d missing",
			round, standbys, settled.Round(time.Millisecond), old.name, next.name, took.Round(time.Millisecond), old.name, time.Since(rejoin).Round(time.Millisecond), len(acked), len(missing))
	}
	w.stop()
	acked := w.snapshot()
	missing, err := missingOn(primary, acked)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range missing {
		lost[id] = true
	}
	t.Logf("zero-loss: %d rounds in %v, acknowledged %d, present %d, lost %d (on the last primary %s; %d commits failed or were cut off by a kill, outcome unknown)",
		*zeroLossRounds, time.Since(began).Round(time.Second), len(acked), len(acked)-len(missing), len(lost), primary.name, w.failures())
	if len(lost) > 0 {
		t.Errorf("%d acknowledged commits lost", len(lost))
	}
	if !extraFailover {
		c.assertHistory(t, promoted)
	}
	for _, m := range c.m {
		m.assertNoCrash(t)
	}
}

// missingOn returns the ids of acked that m's acks table lacks.
func missingOn(m *member, acked []int64) ([]int64, error) {
	var have []int64
	err := errors.New("not read yet")
	deadline := time.Now().Add(opTimeout)
	for err != nil && time.Now().Before(deadline) {
		have, err = readAcks(m)
		if err != nil {
			time.Sleep(pollInterval)
		}
	}
	if err != nil {
		return nil, err
	}
	slices.Sort(have)
	var missing []int64
	for _, id := range acked {
		if _, ok := slices.BinarySearch(have, id); !ok {
			missing = append(missing, id)
		}
	}
	return missing, nil
}

func readAcks(m *member) ([]int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	conn, err := m.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, "select id from acks")
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// writer commits one row at a time to whichever member leads and records
// every commit acknowledged to it: its id, when the acknowledgement came and
// from which member.
type writer struct {
	c      *testCluster
	every  time.Duration
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	acked   []ack
	lastErr error
	// failed counts commits that returned an error or were cut off: their
	// outcome is unknown, so they are not acknowledged.
	failed int
	// slowest is the longest a commit took, acknowledged or not.
	slowest time.Duration
}

// ack is one acknowledged commit.
type ack struct {
	id int64
	// at is when the acknowledgement arrived: the commit happened before.
	at     time.Time
	member string
}

// startWriter starts a writer that commits every `every` (without pause
// when 0) into the table acks (id bigint primary key).
func startWriter(c *testCluster, every time.Duration) *writer {
	ctx, cancel := context.WithCancel(context.Background())
	w := &writer{c: c, every: every, cancel: cancel, done: make(chan struct{})}
	go w.run(ctx)
	return w
}

func (w *writer) stop() {
	w.cancel()
	<-w.done
}

func (w *writer) run(ctx context.Context) {
	defer close(w.done)
	var (
		conn   *pgx.Conn
		member string
		tick   <-chan time.Time
	)
	defer func() {
		if conn != nil {
			_ = conn.Close(context.Background())
		}
	}()
	if w.every > 0 {
		ticker := time.NewTicker(w.every)
		defer ticker.Stop()
		tick = ticker.C
	}
	for id := int64(1); ctx.Err() == nil; {
		if conn == nil {
			var err error
			if conn, member, err = w.connectPrimary(ctx); err != nil {
				w.setErr(err)
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond): // the cluster is between primaries
				}
				continue
			}
		}
		cctx, cancel := context.WithTimeout(ctx, commitTimeout)
		began := time.Now()
		_, err := conn.Exec(cctx, "insert into acks (id) values ($1)", id)
		at := time.Now()
		cancel()
		w.mu.Lock()
		if err == nil {
			w.acked = append(w.acked, ack{id: id, at: at, member: member})
		} else if ctx.Err() == nil {
			w.failed++
			w.lastErr = err
		}
		w.slowest = max(w.slowest, at.Sub(began))
		w.mu.Unlock()
		id++
		if err != nil {
			_ = conn.Close(context.Background())
			conn = nil
		}
		if tick != nil {
			select {
			case <-ctx.Done():
			case <-tick:
			}
		}
	}
}

// connectPrimary connects to the member holding the leader key, if it runs
// as a primary, and returns the connection and the member's name.
func (w *writer) connectPrimary(ctx context.Context) (*pgx.Conn, string, error) {
	v, err := w.c.dcs()
	if err != nil {
		return nil, "", err
	}
	name := v.leader()
	if name == "" {
		return nil, "", errors.New("no leader")
	}
	var m *member
	for _, x := range w.c.m {
		if x.name == name {
			m = x
		}
	}
	if m == nil {
		return nil, "", fmt.Errorf("unknown leader %q", name)
	}
	cctx, cancel := context.WithTimeout(ctx, sqlTimeout)
	defer cancel()
	conn, err := m.connect(cctx)
	if err != nil {
		return nil, "", err
	}
	var inRecovery bool
	if err := conn.QueryRow(cctx, "select pg_is_in_recovery()").Scan(&inRecovery); err != nil || inRecovery {
		_ = conn.Close(context.Background())
		return nil, "", fmt.Errorf("%s: in recovery %v, %v", name, inRecovery, err)
	}
	return conn, name, nil
}

func (w *writer) setErr(err error) {
	w.mu.Lock()
	w.lastErr = err
	w.mu.Unlock()
}

func (w *writer) lastError() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}

func (w *writer) failures() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failed
}

func (w *writer) ackedCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

// snapshot returns the ids acknowledged so far (sorted: they are taken in
// order).
func (w *writer) snapshot() []int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	ids := make([]int64, len(w.acked))
	for i, a := range w.acked {
		ids[i] = a.id
	}
	return ids
}

// acks returns the commits acknowledged so far, in order.
func (w *writer) acks() []ack {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.acked)
}

// slowestCommit is the longest a commit took so far.
func (w *writer) slowestCommit() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.slowest
}

// assertHistory waits until /history has a line for every promotion, in
// Patroni's form [timeline, lsn, reason, timestamp, new_leader]: the
// cluster started on timeline 1 and promoted[i] left timeline i+1.
func (c *testCluster) assertHistory(t testing.TB, promoted []string) {
	t.Helper()
	var lines [][]any
	poll.Eventually(t, opTimeout, fmt.Sprintf("/history to list %d promotions", len(promoted)), func() error {
		v, err := c.dcs()
		if err != nil {
			return err
		}
		kv := v.kv["history"]
		if kv == nil {
			return errors.New("no /history")
		}
		lines = nil
		if err := json.Unmarshal([]byte(kv.Value), &lines); err != nil {
			return fmt.Errorf("/history is not a JSON array of arrays: %v: %s", err, kv.Value)
		}
		if len(lines) < len(promoted) {
			return fmt.Errorf("%d lines", len(lines))
		}
		return nil
	})

	if len(lines) != len(promoted) {
		t.Errorf("/history has %d lines for %d promotions: %v", len(lines), len(promoted), lines)
	}
	var lastLSN float64
	for i, l := range lines[:min(len(lines), len(promoted))] {
		if len(l) != 5 {
			t.Errorf("/history line %d has %d fields, want [timeline, lsn, reason, timestamp, new_leader]: %v", i, len(l), l)
			continue
		}
		tl, _ := l[0].(float64)
		lsn, _ := l[1].(float64)
		reason, _ := l[2].(string)
		ts, _ := l[3].(string)
		leader, _ := l[4].(string)
		if int(tl) != i+1 {
			t.Errorf("/history line %d: timeline %v, want %d", i, l[0], i+1)
		}
		if lsn <= lastLSN {
			t.Errorf("/history line %d: switch LSN %v not past the previous one %v", i, l[1], lastLSN)
		}
		lastLSN = lsn
		if reason == "" {
			t.Errorf("/history line %d: no reason: %v", i, l)
		}
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Errorf("/history line %d: timestamp %q: %v", i, ts, err)
		}
		if leader != promoted[i] {
			t.Errorf("/history line %d: new_leader %q, but %s was promoted", i, leader, promoted[i])
		}
	}
}
