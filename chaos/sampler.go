package main

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	tkcluster "github.com/custos-ha/custos/testkit/cluster"
)

// probeTable is the unlogged table the sampler inserts into.
const probeTable = "chaos_probe"

const (
	// sampleEvery is how often the sampler asks each member whether it
	// takes a write.
	sampleEvery = 50 * time.Millisecond
	// probeTimeout bounds one probe (connection and insert): a server that
	// does not take the write at once is not counted as taking it.
	probeTimeout = 500 * time.Millisecond
)

// sampler asks every member, at its pace, whether it accepts a write right
// now: a real insert on a connection of its own, with a short statement
// timeout. Only a committed insert counts.
type sampler struct {
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

// span is a stretch of time.
type span struct{ from, to time.Time }

func (s span) length() time.Duration { return s.to.Sub(s.from) }

// overlap is a stretch in which two members took writes.
type overlap struct {
	span
	a, b string
}

func startSampler(c *cluster) *sampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &sampler{cancel: cancel, probes: map[string][]probe{}}
	for _, m := range c.h.Members {
		s.wg.Add(1)
		go s.run(ctx, m)
	}
	return s
}

// stop ends the sampling; it may be called more than once.
func (s *sampler) stop() {
	s.cancel()
	s.wg.Wait()
}

func (s *sampler) run(ctx context.Context, m *tkcluster.Member) {
	defer s.wg.Done()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			_ = conn.Close(context.Background())
		}
	}()
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	for {
		start := time.Now()
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		var err error
		if conn == nil {
			if conn, err = pgx.Connect(pctx, dsn(m)); err == nil {
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
		if err != nil && conn != nil && (conn.IsClosed() || pctx.Err() != nil) {
			// A timed-out statement leaves the connection in doubt.
			_ = conn.Close(context.Background())
			conn = nil
		}
		s.mu.Lock()
		s.probes[m.Name] = append(s.probes[m.Name], probe{start: start, end: end, ok: err == nil})
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
// shorter, so spans of two members that do not overlap prove that the two
// did not accept writes at the same time.
func (s *sampler) writable(name string) []span {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []span
	in := false
	for _, p := range s.probes[name] {
		switch {
		case p.ok && !in:
			out = append(out, span{p.start, p.end})
			in = true
		case p.ok:
			out[len(out)-1].to = p.end
		default:
			in = false
		}
	}
	return out
}

// overlaps are the stretches in which two members' writable spans overlap:
// the dual-primary windows.
func (s *sampler) overlaps(names []string) []overlap {
	var out []overlap
	for i, a := range names {
		for _, b := range names[i+1:] {
			for _, x := range s.writable(a) {
				for _, y := range s.writable(b) {
					from, to := later(x.from, y.from), earlier(x.to, y.to)
					if from.Before(to) {
						out = append(out, overlap{span{from, to}, a, b})
					}
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].from.Before(out[j].from) })
	return out
}

// leaderChanges counts the times a member began to take writes after
// another one had: 0 when one member took every write.
func (s *sampler) leaderChanges(names []string) int {
	type owned struct {
		span
		name string
	}
	var all []owned
	for _, n := range names {
		for _, sp := range s.writable(n) {
			all = append(all, owned{sp, n})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].from.Before(all[j].from) })
	changes := 0
	for i := 1; i < len(all); i++ {
		if all[i].name != all[i-1].name {
			changes++
		}
	}
	return changes
}

// outages are the stretches of at least min, between the first and the
// last write the sampler saw, in which no member took a write. Spans are
// over-estimates, so an outage is never longer than the truth.
func (s *sampler) outages(names []string, min time.Duration) []span {
	var all []span
	for _, n := range names {
		all = append(all, s.writable(n)...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].from.Before(all[j].from) })
	if len(all) == 0 {
		return nil
	}
	var out []span
	end := all[0].to
	for _, sp := range all[1:] {
		if gap := (span{end, sp.from}); gap.length() >= min {
			out = append(out, gap)
		}
		end = later(end, sp.to)
	}
	return out
}

// otherWritableSince reports whether a member other than except took a
// write in a probe that started after since.
func (s *sampler) otherWritableSince(except string, since time.Time) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, ps := range s.probes {
		if name == except {
			continue
		}
		for i := len(ps) - 1; i >= 0 && ps[i].start.After(since); i-- {
			if ps[i].ok {
				return name, true
			}
		}
	}
	return "", false
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
