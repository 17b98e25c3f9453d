//go:build integration

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/custos-ha/custos/testkit/poll"
)

// Who accepts writes, when: the instruments of the fencing tests.

const (
	// sampleEvery is how often the write sampler asks each member whether
	// it accepts a write.
	sampleEvery = 20 * time.Millisecond
	// coarseSampleEvery and coarseWriteEvery are the paces of the tests
	// whose margins are seconds (a primary cut from the DCS, a frozen
	// DCS): half the load on a machine that runs other tests beside them.
	coarseSampleEvery = 50 * time.Millisecond
	coarseWriteEvery  = 25 * time.Millisecond
	// probeTimeout bounds one probe (connection, statement): a server that
	// does not take the write at once is not counted as accepting it.
	probeTimeout = 500 * time.Millisecond
	// writeEvery is how often the fencing tests' writer commits.
	writeEvery = 10 * time.Millisecond
)

// fencingParameters are the PostgreSQL settings of the fencing tests'
// clusters. Their commits need not wait for the WAL to reach the disk: the
// tests ask when a server accepts a write, not whether it survives a
// crash, and a flush per commit (a hundred a second in each of several
// clusters) slows every other test running beside them.
var fencingParameters = []string{`synchronous_commit = "off"`}

const (
	// leaseSweep is how often etcd looks for expired leases: it deletes a
	// leader key up to this long after its lease ran out, so a write is
	// only proven to come before the expiry when it comes this much before
	// the deletion.
	leaseSweep = 500 * time.Millisecond
)

// probeTable is the unlogged table the write sampler inserts into: a write
// like any other to the server, without WAL for the rows.
const probeTable = "e2e_probe"

// writeSampler asks every member, at its pace, whether it accepts a
// write right now: a real insert on a connection of the sampler's own,
// with a short statement timeout. Only a committed insert counts.
type writeSampler struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	probes map[string][]probe
}

// probe is one attempt: the write happened between start and end when ok.
type probe struct {
	start, end time.Time
	ok         bool
}

// interval is a span of time.
type interval struct{ from, to time.Time }

func (iv interval) length() time.Duration { return iv.to.Sub(iv.from) }

func startSampler(t testing.TB, c *testCluster, every time.Duration) *writeSampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &writeSampler{cancel: cancel, probes: map[string][]probe{}}
	for _, m := range c.m {
		s.wg.Add(1)
		go s.run(ctx, m, every)
	}
	t.Cleanup(s.stop)
	return s
}

// stop ends the sampling; it may be called more than once.
func (s *writeSampler) stop() {
	s.cancel()
	s.wg.Wait()
}

func (s *writeSampler) run(ctx context.Context, m *member, every time.Duration) {
	defer s.wg.Done()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			_ = conn.Close(context.Background())
		}
	}()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		start := time.Now()
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		var err error
		if conn == nil {
			if conn, err = m.connect(pctx); err == nil {
				_, err = conn.Exec(pctx, fmt.Sprintf("set statement_timeout = %d", probeTimeout.Milliseconds()))
			}
		}
		if err == nil {
			_, err = conn.Exec(pctx, "insert into "+probeTable+" default values")
		}
		end := time.Now()
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil && conn != nil && conn.IsClosed() {
			conn = nil
		}
		if err != nil && conn != nil && pctx.Err() != nil {
			// A timed-out statement leaves the connection in doubt.
			_ = conn.Close(context.Background())
			conn = nil
		}
		s.mu.Lock()
		s.probes[m.name] = append(s.probes[m.name], probe{start: start, end: end, ok: err == nil})
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// writable returns the spans in which the member accepted writes: each run
// of successful probes, from the start of the first to the end of the
// last. A span may be longer than the truth by one probe at each end, never
// shorter, so two spans that do not overlap prove that the two members did
// not accept writes at the same time.
func (s *writeSampler) writable(name string) []interval {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []interval
	in := false
	for _, p := range s.probes[name] {
		switch {
		case p.ok && !in:
			out = append(out, interval{p.start, p.end})
			in = true
		case p.ok:
			out[len(out)-1].to = p.end
		default:
			in = false
		}
	}
	return out
}

// lastWrite is the end of the member's last successful probe, zero if none.
func (s *writeSampler) lastWrite(name string) time.Time {
	spans := s.writable(name)
	if len(spans) == 0 {
		return time.Time{}
	}
	return spans[len(spans)-1].to
}

// firstWriteAfter is the end of the first successful probe of a member
// other than except that started after since, and that member's name.
func (s *writeSampler) firstWriteAfter(except string, since time.Time) (time.Time, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var at time.Time
	who := ""
	for name, ps := range s.probes {
		if name == except {
			continue
		}
		for _, p := range ps {
			if p.ok && p.start.After(since) {
				if at.IsZero() || p.end.Before(at) {
					at, who = p.end, name
				}
				break
			}
		}
	}
	return at, who
}

// samples is how many probes the sampler made.
func (s *writeSampler) samples() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, ps := range s.probes {
		n += len(ps)
	}
	return n
}

// overlap is a time in which several members accepted writes.
type overlap struct {
	interval
	members []string
}

// overlaps returns the times in which two or more members accepted writes
// (from their writable spans), in order.
func (s *writeSampler) overlaps(c *testCluster) []overlap {
	type edge struct {
		at    time.Time
		name  string
		start bool
	}
	var edges []edge
	for _, m := range c.m {
		for _, iv := range s.writable(m.name) {
			edges = append(edges, edge{iv.from, m.name, true}, edge{iv.to, m.name, false})
		}
	}
	slices.SortStableFunc(edges, func(a, b edge) int { return a.at.Compare(b.at) })
	var (
		out    []overlap
		active []string
		prev   time.Time
	)
	for _, e := range edges {
		if len(active) >= 2 && e.at.After(prev) {
			if n := len(out); n > 0 && out[n-1].to.Equal(prev) {
				out[n-1].to = e.at
				for _, name := range active {
					if !slices.Contains(out[n-1].members, name) {
						out[n-1].members = append(out[n-1].members, name)
					}
				}
			} else {
				out = append(out, overlap{interval{prev, e.at}, slices.Clone(active)})
			}
		}
		if e.start {
			active = append(active, e.name)
		} else if i := slices.Index(active, e.name); i >= 0 {
			active = slices.Delete(active, i, i+1)
		}
		prev = e.at
	}
	return out
}

// totalLength is the summed length of the overlaps.
func totalLength(os []overlap) time.Duration {
	var d time.Duration
	for _, o := range os {
		d += o.length()
	}
	return d
}

// describeOverlaps lists the overlaps relative to t0, the first few in
// full.
func describeOverlaps(os []overlap, t0 time.Time) string {
	var parts []string
	for i, o := range os {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("... %d more", len(os)-i))
			break
		}
		parts = append(parts, fmt.Sprintf("%s from %s for %v", strings.Join(o.members, "+"), since(t0, o.from), o.length().Round(time.Millisecond)))
	}
	return strings.Join(parts, "; ")
}

// since renders at relative to t0 ("+1.234s"), "never" for a zero time.
func since(t0, at time.Time) string {
	if at.IsZero() {
		return "never"
	}
	d := at.Sub(t0).Round(time.Millisecond)
	if d >= 0 {
		return "+" + d.String()
	}
	return d.String()
}

// lastAckFrom is when the writer's last commit on the member was
// acknowledged, zero if none was.
func lastAckFrom(acks []ack, name string) time.Time {
	for i := len(acks) - 1; i >= 0; i-- {
		if acks[i].member == name {
			return acks[i].at
		}
	}
	return time.Time{}
}

// later is the later of two times (a zero time counts as earliest).
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// exitWatch polls a process until it is gone.
type exitWatch struct {
	stopc chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	gone  time.Time
}

// watchExit starts polling pid every few milliseconds; goneAt says when it
// was first seen gone (a zombie counts as gone: its server is).
func watchExit(t testing.TB, pid int) *exitWatch {
	w := &exitWatch{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(5 * time.Millisecond) // the precision of the measurement
		defer tick.Stop()
		for processAlive(pid) {
			select {
			case <-w.stopc:
				return
			case <-tick.C:
			}
		}
		w.mu.Lock()
		w.gone = time.Now()
		w.mu.Unlock()
	}()
	t.Cleanup(func() {
		close(w.stopc)
		<-w.done
	})
	return w
}

// goneAt is when the process was first seen gone, zero while it lives.
func (w *exitWatch) goneAt() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gone
}

// restAnswer is one answer of a member's REST API.
type restAnswer struct {
	at   time.Time
	took time.Duration
	code int
	body string
	err  error
}

// summary is the answer's code and the reason custos gives in it, or the
// error.
func (a restAnswer) summary() string {
	if a.err != nil {
		return a.err.Error()
	}
	var st status
	if json.Unmarshal([]byte(a.body), &st) == nil && st.Custos != nil {
		return fmt.Sprintf("%d, role %q, reason %q", a.code, st.Role, st.Custos.Reason)
	}
	return fmt.Sprintf("%d %s", a.code, a.body[:min(len(a.body), 200)])
}

// pollREST asks the member's REST API for path every `every` and keeps
// every answer.
func pollREST(t testing.TB, m *member, path string, every time.Duration) *recorder[restAnswer] {
	return record(t, func(ctx context.Context, add func(restAnswer)) {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			at := time.Now()
			code, body, err := m.get(path)
			if ctx.Err() != nil {
				return
			}
			add(restAnswer{at: at, took: time.Since(at), code: code, body: strings.TrimSpace(string(body)), err: err})
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
}

// waitFormed waits, as waitHealthy does, for a freshly started cluster to
// have a primary and streaming replicas, and fails at once when an agent
// exits meanwhile (a configuration it refuses, say).
func (c *testCluster) waitFormed(t testing.TB) *member {
	t.Helper()
	var leader *member
	poll.Eventually(t, formTimeout, "a primary and streaming replicas", func() error {
		for _, m := range c.m {
			if !m.running() {
				t.Fatalf("%s: the agent exited (%v) before the cluster formed:\n%s", m.name, m.current().state, tail(strings.Join(m.logSince(0), "\n"), 40))
			}
		}
		var err error
		leader, err = c.healthy()
		return err
	})

	return leader
}

// instruments watch a cluster in a fencing test: a writer committing every
// writeEvery on the primary, the write sampler, and a watch on the leader
// key.
type instruments struct {
	w  *writer
	s  *writeSampler
	lw *leaderWatch
}

// instrument creates the writer's and the sampler's tables on the primary,
// starts the instruments and waits until they see the primary take writes.
// pace is how often the instruments write and sample.
type pace struct{ write, sample time.Duration }

// finePace is the pace for the frozen agent: a commit every 10 ms,
// every member asked every 20 ms; coarsePace serves margins of seconds.
var (
	finePace   = pace{write: writeEvery, sample: sampleEvery}
	coarsePace = pace{write: coarseWriteEvery, sample: coarseSampleEvery}
)

func (c *testCluster) instrument(t *testing.T, primary *member, p pace) instruments {
	t.Helper()
	primary.exec(t, "create table acks (id bigint primary key)")
	primary.exec(t, "create unlogged table "+probeTable+" (at timestamptz not null default clock_timestamp())")
	w := startWriter(c, p.write)
	t.Cleanup(w.stop)
	s := startSampler(t, c, p.sample)
	waitWrites(t, w, s, primary, 100)
	return instruments{w: w, s: s, lw: c.watchLeader(t, c.mustDCS(t).rev+1, nil)}
}

// stop stops the writer and the sampler (the watch runs on until the end of
// the test).
func (in instruments) stop() {
	in.w.stop()
	in.s.stop()
}

// waitWrites waits until the writer has had n more commits acknowledged
// and the sampler has seen the primary accept writes.
func waitWrites(t testing.TB, w *writer, s *writeSampler, primary *member, n int) {
	t.Helper()
	from := w.ackedCount()
	poll.Eventually(t, opTimeout, fmt.Sprintf("%d commits and a sampled write on %s", n, primary.name), func() error {
		if got := w.ackedCount() - from; got < n {
			return fmt.Errorf("%d acknowledged; last error %v", got, w.lastError())
		}
		if s.lastWrite(primary.name).IsZero() {
			return fmt.Errorf("no sampled write on %s", primary.name)
		}
		return nil
	})

}
