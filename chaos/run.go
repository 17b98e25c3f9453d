package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	tkcluster "github.com/custos-ha/custos/testkit/cluster"
	"github.com/custos-ha/custos/testkit/poll"
)

const (
	// warmAcks is how many commits the writer must have had acknowledged
	// before the fault: the fault lands among commits that waited for the
	// synchronous standby.
	warmAcks = 50
	// afterAcks is how many commits must be acknowledged once the cluster
	// converged: the writer found the leader again.
	afterAcks = 20
	// idsPerRun separates the writer's ids of two runs.
	idsPerRun = 1_000_000_000
	// takeoverLimit bounds the wait for another member to take writes
	// after a fault that costs the primary: three lease lifetimes.
	takeoverLimit = 3 * 10 * time.Second
	// outageMin is the shortest stretch without a writable member that
	// counts as an outage: longer than two probes that time out on a busy
	// machine.
	outageMin = time.Second
	// takeoverHold is how long a fault lasts after another member took
	// over: long enough to see whether the old primary still takes
	// writes.
	takeoverHold = 2 * time.Second
)

// result is what one run of a scenario measured.
type result struct {
	// err is why the run did not finish (the cluster did not converge,
	// a fault could not be injected); the other fields hold what was
	// measured up to then.
	err error
	// acked is how many commits were acknowledged, lost how many of them
	// the leader lacks at the end.
	acked, lost int
	// failed commits (error or timeout: outcome unknown), and commits
	// that came back with the warning that the wait for the synchronous
	// standby was cancelled (not counted as acknowledged).
	failed, warned int
	overlaps       []overlap
	// changes counts the times another member began to take writes;
	// outages are the stretches of outageMin or more in which no member
	// took writes (a failover, a demotion, a primary that restarts).
	changes int
	outages []span
	// converged says whether the cluster was whole again; converge is how
	// long after the fault was healed.
	converged bool
	converge  time.Duration
	// gap is the longest time between two acknowledged commits.
	gap time.Duration
	// note says what happened (who took over, when).
	note string
}

// run is one run of a scenario in progress: what a fault needs.
type run struct {
	c      *cluster
	leader *tkcluster.Member
	w      *writer
	s      *sampler
	logf   func(format string, args ...any)
	// mu guards notes: a fault may note from two goroutines.
	mu    sync.Mutex
	notes []string
}

func (r *run) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.notes = append(r.notes, msg)
	r.mu.Unlock()
	r.logf("  %s", msg)
}

// replicas are the members other than the leader.
func (r *run) replicas() []*tkcluster.Member {
	var out []*tkcluster.Member
	for _, m := range r.c.h.Members {
		if m != r.leader {
			out = append(out, m)
		}
	}
	return out
}

// waitTakeover waits until a member other than old took a write after
// since, or limit passed; it names the member, empty when none did.
func (r *run) waitTakeover(ctx context.Context, old *tkcluster.Member, since time.Time, limit time.Duration) string {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var who string
	err := poll.Until(ctx, func(context.Context) error {
		var ok bool
		if who, ok = r.s.otherWritableSince(old.Name, since); !ok {
			return errors.New("no other member took a write")
		}
		return nil
	})
	if err != nil {
		r.note("no other member took writes within %v", limit)
		return ""
	}
	r.note("%s takes writes %v after the fault", who, time.Since(since).Round(time.Millisecond))
	return who
}

// hold sleeps d unless ctx ends first.
func hold(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// runOnce runs scenario sc once on c: whole cluster, writer and sampler,
// fault, heal, convergence, checks.
func runOnce(ctx context.Context, c *cluster, sc scenario, n int) (res result) {
	logf := c.env.logf
	began := time.Now()
	leader, err := c.waitHealthy(ctx, convergeLimit)
	if err != nil {
		res.err = err
		return res
	}
	s := startSampler(c)
	w := startWriter(c, int64(n)*idsPerRun)
	defer func() {
		w.stop()
		s.stop()
	}()
	if err := w.waitAcks(ctx, warmAcks, convergeLimit); err != nil {
		res.err = fmt.Errorf("before the fault: %w", err)
		return res
	}
	r := &run{c: c, leader: leader, w: w, s: s, logf: logf}
	// The fault lands at a random point of the agents' cycle.
	hold(ctx, rand.N(timings.LoopWaitDuration()))
	logf("%s run %d: leader %s", sc.name, n, leader.Name)
	healed, ferr := sc.fault(ctx, r)
	if healed.IsZero() {
		healed = time.Now()
	}
	defer func() {
		r.mu.Lock()
		res.note = strings.Join(r.notes, "; ")
		r.mu.Unlock()
	}()
	if ferr != nil {
		res.err = fmt.Errorf("fault: %w", ferr)
	}
	now, err := c.waitHealthy(ctx, convergeLimit)
	if err == nil {
		res.converged, res.converge = true, time.Since(healed)
		r.note("whole again %v after the heal, %s leads", res.converge.Round(time.Millisecond), now.Name)
		if err := w.waitAcks(ctx, afterAcks, convergeLimit); err != nil && res.err == nil {
			res.err = fmt.Errorf("after the heal: %w", err)
		}
	} else if res.err == nil {
		res.err = err
	}
	w.stop()
	s.stop()
	acked := w.snapshot()
	w.mu.Lock()
	res.acked, res.failed, res.warned, res.gap = len(acked), w.failed, w.warned, w.maxStall
	w.mu.Unlock()
	var names []string
	for _, m := range c.h.Members {
		names = append(names, m.Name)
	}
	res.overlaps = s.overlaps(names)
	res.changes = s.leaderChanges(names)
	res.outages = s.outages(names, outageMin)
	for _, o := range res.outages {
		r.note("no member took writes for %v, from %v after the run began", o.length().Round(time.Millisecond), o.from.Sub(began).Round(time.Millisecond))
	}
	for _, o := range res.overlaps {
		r.note("%s and %s both took writes for %v, %v after the run began", o.a, o.b, o.length().Round(time.Millisecond), o.from.Sub(began).Round(time.Millisecond))
	}
	if res.converged {
		// Whoever leads now (the writer has stopped: it has every commit).
		check, err := c.waitHealthy(ctx, convergeLimit)
		if err != nil {
			check = now
		}
		lost, err := missing(ctx, check, acked)
		if err != nil {
			if res.err == nil {
				res.err = err
			}
		} else {
			res.lost = len(lost)
			if len(lost) > 0 {
				r.note("%d acknowledged commits are missing on %s, e.g. %v", len(lost), check.Name, lost[:min(len(lost), 5)])
			}
		}
	}
	logf("%s run %d: %d acknowledged, %d lost, %d dual-primary windows, %d leader changes, %d outages, converged %v after %v, longest write gap %v; err %v",
		sc.name, n, res.acked, res.lost, len(res.overlaps), res.changes, len(res.outages), res.converged, res.converge.Round(time.Millisecond), res.gap.Round(time.Millisecond), res.err)
	return res
}
