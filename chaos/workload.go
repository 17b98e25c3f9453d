package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	tkcluster "github.com/custos-ha/custos/testkit/cluster"
	"github.com/custos-ha/custos/testkit/poll"
)

// ackTable holds one row per commit the writer made.
const ackTable = "chaos_acks"

const (
	// writeEvery is the writer's pace: one commit every 10 ms, a steady
	// load that leaves the two cores to the cluster.
	writeEvery = 10 * time.Millisecond
	// commitTimeout bounds one commit; one that takes longer is not
	// acknowledged (its outcome is unknown).
	commitTimeout = 5 * time.Second
	// reconnectPause is the wait after a failed connection: the cluster is
	// between primaries.
	reconnectPause = 100 * time.Millisecond
)

// syncCancelled starts the warning PostgreSQL sends when a commit's wait
// for the synchronous standby is cancelled: the commit is then reported
// done although it "might not have been replicated". Such a commit is not
// acknowledged: a client that reads the warning knows.
const syncCancelled = "canceling wait for synchronous replication"

// ack is one commit acknowledged to the writer.
type ack struct {
	id     int64
	at     time.Time
	member string
}

// writer commits one row per transaction through the cluster's
// read-write connection string and records each acknowledged commit.
type writer struct {
	c      *cluster
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	next     int64
	acked    []ack
	failed   int
	warned   int // commits that came back with syncCancelled
	lastErr  error
	maxStall time.Duration // longest time between two acknowledged commits
}

// startWriter starts a writer whose ids begin at first.
func startWriter(c *cluster, first int64) *writer {
	ctx, cancel := context.WithCancel(context.Background())
	w := &writer{c: c, cancel: cancel, done: make(chan struct{}), next: first}
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
		warned bool
	)
	defer func() {
		if conn != nil {
			_ = conn.Close(context.Background())
		}
	}()
	tick := time.NewTicker(writeEvery)
	defer tick.Stop()
	for ctx.Err() == nil {
		if conn == nil {
			var err error
			conn, member, err = w.connect(ctx, &warned)
			if err != nil {
				w.setErr(err)
				select {
				case <-ctx.Done():
				case <-time.After(reconnectPause):
				}
				continue
			}
		}
		w.mu.Lock()
		id := w.next
		w.next++
		w.mu.Unlock()
		warned = false
		cctx, cancel := context.WithTimeout(ctx, commitTimeout)
		_, err := conn.Exec(cctx, "insert into "+ackTable+" (id) values ($1)", id)
		at := time.Now()
		cancel()
		w.mu.Lock()
		switch {
		case err == nil && !warned:
			if n := len(w.acked); n > 0 {
				w.maxStall = max(w.maxStall, at.Sub(w.acked[n-1].at))
			}
			w.acked = append(w.acked, ack{id: id, at: at, member: member})
		case err == nil:
			w.warned++
		case ctx.Err() == nil:
			w.failed++
			w.lastErr = err
		}
		w.mu.Unlock()
		if err != nil {
			_ = conn.Close(context.Background())
			conn = nil
			continue
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

// connect opens a read-write connection and names the member it reached
// (by its port). warned is set when the server warns that a commit's wait
// for the synchronous standby was cancelled.
func (w *writer) connect(ctx context.Context, warned *bool) (*pgx.Conn, string, error) {
	cfg, err := pgx.ParseConfig(w.c.clusterDSN())
	if err != nil {
		return nil, "", err
	}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		if strings.HasPrefix(n.Message, syncCancelled) {
			*warned = true
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 3*sqlTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return nil, "", err
	}
	name := "?"
	port := conn.PgConn().Conn().RemoteAddr().String()
	for _, m := range w.c.h.Members {
		if strings.HasSuffix(port, fmt.Sprintf(":%d", m.PGPort)) {
			name = m.Name
		}
	}
	return conn, name, nil
}

func (w *writer) setErr(err error) {
	w.mu.Lock()
	w.lastErr = err
	w.mu.Unlock()
}

// ackedCount is how many commits were acknowledged so far.
func (w *writer) ackedCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

func (w *writer) snapshot() []ack {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.acked)
}

// waitAcks waits until n more commits than now were acknowledged.
func (w *writer) waitAcks(ctx context.Context, n int, timeout time.Duration) error {
	want := w.ackedCount() + n
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("%d commits acknowledged within %v", n, timeout))
	defer cancel()
	return poll.Until(ctx, func(context.Context) error {
		if got := w.ackedCount(); got < want {
			w.mu.Lock()
			defer w.mu.Unlock()
			return fmt.Errorf("%d short; the writer's last error: %v", want-got, w.lastErr)
		}
		return nil
	})
}

// missing returns the acknowledged ids that m's table lacks.
func missing(ctx context.Context, m *tkcluster.Member, acked []ack) ([]int64, error) {
	if len(acked) == 0 {
		return nil, nil
	}
	lo, hi := acked[0].id, acked[len(acked)-1].id
	ctx, cancel := context.WithTimeout(ctx, 10*sqlTimeout)
	defer cancel()
	conn, err := connect(ctx, m)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, "select id from "+ackTable+" where id between $1 and $2", lo, hi)
	if err != nil {
		return nil, fmt.Errorf("%s: reading %s: %w", m.Name, ackTable, err)
	}
	have, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("%s: reading %s: %w", m.Name, ackTable, err)
	}
	present := make(map[int64]bool, len(have))
	for _, id := range have {
		present[id] = true
	}
	var out []int64
	for _, a := range acked {
		if !present[a.id] {
			out = append(out, a.id)
		}
	}
	return out, nil
}
