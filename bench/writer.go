package main

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// writeInterval is the client's pace: one commit every 10 ms.
	writeInterval = 10 * time.Millisecond
	// writeTimeout bounds one commit, and one connection attempt over all
	// hosts: a hung server must not hide the others for long.
	writeTimeout = 2 * time.Second
)

// ack is one acknowledged commit.
type ack struct {
	id int64
	// sent is when the INSERT was sent, at when its commit was
	// acknowledged.
	sent, at time.Time
}

// writer commits one row every writeInterval through the cluster's
// multi-host DSN (target_session_attrs=read-write), reconnecting after any
// error, and records what was acknowledged.
type writer struct {
	dsn    string
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	acks   []ack
	errors int
}

// bench_writes is the table every writer writes to; ids are unique per run.
const createTable = `CREATE TABLE IF NOT EXISTS bench_writes (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())`

func startWriter(dsn string, firstID int64) *writer {
	ctx, cancel := context.WithCancel(context.Background())
	w := &writer{dsn: dsn, cancel: cancel, done: make(chan struct{})}
	go w.run(ctx, firstID)
	return w
}

func (w *writer) run(ctx context.Context, id int64) {
	defer close(w.done)
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			_ = conn.Close(context.Background())
		}
	}()
	tick := time.NewTicker(writeInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		octx, cancel := context.WithTimeout(ctx, writeTimeout)
		if conn == nil {
			c, err := pgx.Connect(octx, w.dsn)
			if err != nil {
				cancel()
				w.failed()
				continue
			}
			conn = c
		}
		sent := time.Now()
		_, err := conn.Exec(octx, "INSERT INTO bench_writes (id) VALUES ($1)", id)
		cancel()
		if err != nil {
			_ = conn.Close(context.Background())
			conn = nil
			w.failed()
			continue
		}
		w.mu.Lock()
		w.acks = append(w.acks, ack{id: id, sent: sent, at: time.Now()})
		w.mu.Unlock()
		id++
	}
}

func (w *writer) failed() {
	w.mu.Lock()
	w.errors++
	w.mu.Unlock()
}

// snapshot copies the acknowledgements so far.
func (w *writer) snapshot() []ack {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]ack(nil), w.acks...)
}

// count is the number of acknowledgements so far.
func (w *writer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acks)
}

// halt stops the writer and returns every acknowledgement.
func (w *writer) halt() []ack {
	w.cancel()
	<-w.done
	return w.snapshot()
}

// lastAck is the time of the latest acknowledgement, zero when none.
func (w *writer) lastAck() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.acks) == 0 {
		return time.Time{}
	}
	return w.acks[len(w.acks)-1].at
}

// firstAckAfter is the first acknowledgement of a commit sent after t: a
// commit in flight at t may still be acknowledged by a server that is
// being killed, one sent once it is dead reached its successor.
func firstAckAfter(acks []ack, t time.Time) (ack, bool) {
	for _, a := range acks {
		if a.sent.After(t) {
			return a, true
		}
	}
	return ack{}, false
}

// longestGap is the longest time between consecutive acknowledgements that
// ends after from: the write downtime around an event at from.
func longestGap(acks []ack, from time.Time) time.Duration {
	var longest time.Duration
	for i := 1; i < len(acks); i++ {
		if acks[i].at.Before(from) {
			continue
		}
		if g := acks[i].at.Sub(acks[i-1].at); g > longest {
			longest = g
		}
	}
	return longest
}
