package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Metric keys of the results.
const (
	mSwitchoverDowntime = "A.downtime"
	mCrashRecovery      = "B.recovery"
	mCrashLeaseLeft     = "B.lease_left"
	mCrashBeyondLease   = "B.beyond_lease"
	mCrashLost          = "B.lost"
	mPostmasterRecovery = "C.recovery"
	mPrimaryRPS         = "D.primary.rps"
	mPrimaryP50         = "D.primary.p50"
	mPrimaryP99         = "D.primary.p99"
	mReplicaRPS         = "D.replica.rps"
	mReplicaP50         = "D.replica.p50"
	mReplicaP99         = "D.replica.p99"
	mIdleRSS            = "E.rss"
	mIdleAnon           = "E.anon"
	mIdleCPU            = "E.cpu"
	mIdleDCS            = "E.dcs"
)

// Bounds of the waits inside scenarios; none is a measurement.
const (
	// steadyWrites is how many commits the writer must have made before an
	// event: it is connected and committing at its pace.
	steadyWrites  = 50
	steadyTimeout = 30 * time.Second
	// switchoverTimeout bounds the POST /switchover call and what follows.
	switchoverTimeout = 2 * time.Minute
	// afterRecovery keeps the writer going a little after the first
	// commit that followed an event, so that a second outage would show.
	afterRecovery = 500 * time.Millisecond
	// maxAttempts bounds the failed trials of a scenario, in multiples of
	// the trials asked for.
	maxAttempts = 2
)

// options are the run's settings.
type options struct {
	trials  int
	idle    time.Duration
	wrkTime time.Duration
	// pin: D runs wrk on a CPU of its own (see wrkCPUs).
	pin      bool
	scenario map[string]bool
}

// results are one cluster's measurements: metric key -> one value per trial.
type results map[string][]float64

func (r results) add(key string, v float64) { r[key] = append(r[key], v) }

// runner runs the scenarios on one cluster.
type runner struct {
	c      *cluster
	opts   options
	res    results
	errs   []error
	nextID int64
	logf   func(format string, args ...any)
}

func (r *runner) writer() *writer {
	w := startWriter(r.c.dsn(), r.nextID)
	r.nextID += 1 << 20 // no trial commits a million rows
	return w
}

// steady waits until the writer has committed steadyWrites rows.
func steady(ctx context.Context, w *writer) error {
	deadline := time.Now().Add(steadyTimeout)
	for w.count() < steadyWrites {
		if time.Now().After(deadline) {
			return fmt.Errorf("the writer made %d commits in %v", w.count(), steadyTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(writeInterval):
		}
	}
	return nil
}

// waitAckAfter waits for the acknowledgement of a commit sent after t.
func waitAckAfter(ctx context.Context, w *writer, t time.Time, timeout time.Duration) (ack, error) {
	deadline := time.Now().Add(timeout)
	for {
		if a, ok := firstAckAfter(w.snapshot(), t); ok {
			return a, nil
		}
		if time.Now().After(deadline) {
			return ack{}, fmt.Errorf("no commit succeeded within %v", timeout)
		}
		select {
		case <-ctx.Done():
			return ack{}, ctx.Err()
		case <-time.After(writeInterval):
		}
	}
}

// trials runs one trial function until opts.trials succeeded, retrying
// failed ones (after the cluster is whole again) up to a bound.
func (r *runner) trials(ctx context.Context, name string, trial func(ctx context.Context, n int) error) {
	ok := 0
	for attempt := 1; ok < r.opts.trials && attempt <= maxAttempts*r.opts.trials; attempt++ {
		if ctx.Err() != nil {
			return
		}
		if err := trial(ctx, ok+1); err != nil {
			r.logf("%s %s trial %d failed: %v", r.c.sys.label(), name, ok+1, err)
			r.errs = append(r.errs, fmt.Errorf("%s %s: %w", r.c.sys.label(), name, err))
			continue
		}
		ok++
	}
}

func (r *runner) createTable(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, r.c.dsn())
	if err != nil {
		return fmt.Errorf("connecting to the primary: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, createTable); err != nil {
		return fmt.Errorf("creating bench_writes: %w", err)
	}
	return nil
}

// A: planned switchover through the leader's REST API.
func (r *runner) switchover(ctx context.Context, n int) error {
	leader, err := r.c.waitHealthy(ctx, healthyTimeout)
	if err != nil {
		return err
	}
	var candidate *member
	for i := range r.c.members {
		if m := r.c.members[(n+i)%len(r.c.members)]; m != leader {
			candidate = m
			break
		}
	}
	w := r.writer()
	defer w.halt()
	if err := steady(ctx, w); err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]string{"leader": leader.Name, "candidate": candidate.Name})
	start := time.Now()
	code, reply, err := httpPost(ctx, leader.APIURL("/switchover"), body, switchoverTimeout)
	replied := time.Now()
	if err != nil {
		return fmt.Errorf("POST /switchover: %w", err)
	}
	if code != http.StatusOK {
		return fmt.Errorf("POST /switchover: %d %s", code, reply)
	}
	// Wait for the candidate to hold the key and take commits.
	deadline := time.Now().Add(switchoverTimeout)
	for r.c.leader(ctx) != candidate {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not hold the leader key %v after the switchover", candidate.Name, switchoverTimeout)
		}
		time.Sleep(pollInterval)
	}
	took := time.Now()
	if _, err := waitAckAfter(ctx, w, took, switchoverTimeout); err != nil {
		return err
	}
	time.Sleep(afterRecovery) // a second outage right after the first would show
	acks := w.halt()
	down := longestGap(acks, start)
	r.res.add(mSwitchoverDowntime, down.Seconds())
	r.logf("%s A trial %d: %s -> %s, write downtime %.3fs (API replied after %.3fs)",
		r.c.sys.label(), n, leader.Name, candidate.Name, down.Seconds(), replied.Sub(start).Seconds())
	return nil
}

// B: the primary's node dies: SIGKILL of its agent (with its plugins) and
// of its postmaster with every PostgreSQL process, at once.
func (r *runner) nodeCrash(ctx context.Context, n int) error {
	leader, err := r.c.waitHealthy(ctx, healthyTimeout)
	if err != nil {
		return err
	}
	w := r.writer()
	defer w.halt()
	if err := steady(ctx, w); err != nil {
		return err
	}
	tctx, stopTracking := context.WithCancel(ctx)
	defer stopTracking()
	tr, err := trackLease(tctx, r.c.etcd, r.c.prefix())
	if err != nil {
		return err
	}
	ttl := time.Duration(r.c.prof.ttl) * time.Second
	loop := time.Duration(r.c.prof.loopWait) * time.Second
	// Kill at a random point of the renewal cycle. The lease left at the
	// kill comes from the readings after it (nothing renews it then),
	// helped by a renewal seen before it when the readings show one.
	time.Sleep(time.Duration(rand.Int64N(int64(loop))))

	agent := leader.agentPID()
	pg := leader.postmasterTree()
	if agent == 0 || len(pg) == 0 {
		return fmt.Errorf("%s: agent %d, postmaster %v: nothing to kill", leader.Name, agent, pg)
	}
	killed := time.Now()
	_ = syscall.Kill(-agent, syscall.SIGKILL)
	if err := killNow(pg, stopTimeout); err != nil {
		return err
	}
	if err := leader.killAgent(); err != nil {
		return err
	}
	gone := time.Now()
	tr.markKill(killed)
	// Whatever happens next, the node comes back: its agent rejoins
	// (rewinds) before the next trial.
	restarted := false
	defer func() {
		if !restarted {
			_ = leader.Start()
		}
	}()
	first, err := waitAckAfter(ctx, w, gone, ttl+switchoverTimeout)
	if err != nil {
		return err
	}
	time.Sleep(afterRecovery)
	acks := w.halt()
	lr := tr.result()
	stopTracking()

	lost, err := r.lostWrites(ctx, acks)
	if err != nil {
		return err
	}
	rec := first.at.Sub(killed)
	r.res.add(mCrashRecovery, rec.Seconds())
	r.res.add(mCrashLeaseLeft, lr.left.Seconds())
	r.res.add(mCrashBeyondLease, (rec - lr.left).Seconds())
	r.res.add(mCrashLost, float64(lost))
	r.logf("%s B trial %d: killed %s with %.3fs of lease left; key gone +%s, %s took it +%s, first commit +%.3fs (%.3fs beyond the lease), %d acknowledged commits lost",
		r.c.sys.label(), n, leader.Name, lr.left.Seconds(), since(killed, lr.deleted), lr.newLeader, since(killed, lr.successor),
		rec.Seconds(), (rec - lr.left).Seconds(), lost)
	restarted = true
	return leader.Start()
}

func since(from, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return fmt.Sprintf("%.3fs", t.Sub(from).Seconds())
}

// lostWrites counts acknowledged commits missing on the current primary.
func (r *runner) lostWrites(ctx context.Context, acks []ack) (int, error) {
	ids := make([]int64, len(acks))
	for i, a := range acks {
		ids[i] = a.id
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, r.c.dsn())
	if err != nil {
		return 0, fmt.Errorf("connecting to the new primary: %w", err)
	}
	defer conn.Close(context.Background())
	var present int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM bench_writes WHERE id = ANY($1)", ids).Scan(&present); err != nil {
		return 0, fmt.Errorf("counting acknowledged rows: %w", err)
	}
	return len(ids) - present, nil
}

// C: the primary's postmaster dies; its agent lives.
func (r *runner) postmasterCrash(ctx context.Context, n int) error {
	leader, err := r.c.waitHealthy(ctx, healthyTimeout)
	if err != nil {
		return err
	}
	w := r.writer()
	defer w.halt()
	if err := steady(ctx, w); err != nil {
		return err
	}
	pm := leader.PostmasterPID()
	if pm == 0 {
		return fmt.Errorf("%s: no postmaster", leader.Name)
	}
	killed := time.Now()
	if err := killNow([]int{pm}, stopTimeout); err != nil {
		return err
	}
	ttl := time.Duration(r.c.prof.ttl) * time.Second
	first, err := waitAckAfter(ctx, w, time.Now(), ttl+switchoverTimeout)
	if err != nil {
		return err
	}
	time.Sleep(afterRecovery)
	w.halt()
	rec := first.at.Sub(killed)
	r.res.add(mPostmasterRecovery, rec.Seconds())
	now := "none"
	if l := r.c.leader(ctx); l != nil {
		now = l.Name
	}
	r.logf("%s C trial %d: killed %s's postmaster, first commit +%.3fs, leader now %s",
		r.c.sys.label(), n, leader.Name, rec.Seconds(), now)
	return nil
}

// D: wrk on the leader's /primary and a replica's /replica.
func (r *runner) healthChecks(ctx context.Context, n int) error {
	leader, err := r.c.waitHealthy(ctx, healthyTimeout)
	if err != nil {
		return err
	}
	var replica *member
	for _, m := range r.c.members {
		if m != leader {
			replica = m
			break
		}
	}
	for _, c := range []struct {
		m             *member
		path          string
		rps, p50, p99 string
	}{
		{leader, "/primary", mPrimaryRPS, mPrimaryP50, mPrimaryP99},
		{replica, "/replica", mReplicaRPS, mReplicaP50, mReplicaP99},
	} {
		var cpus *wrkCPUs
		if r.opts.pin {
			if cpus, err = pinForWrk(); err != nil {
				return err
			}
		}
		res, err := runWrk(ctx, c.m.APIURL(c.path), r.opts.wrkTime, cpus)
		cpus.restore()
		if err != nil {
			return err
		}
		if res.bad > 0 {
			return fmt.Errorf("GET %s on %s: %d errors or non-2xx answers:\n%s", c.path, c.m.Name, res.bad, res.output)
		}
		r.res.add(c.rps, res.rps)
		r.res.add(c.p50, res.p50.Seconds()*1000)
		r.res.add(c.p99, res.p99.Seconds()*1000)
		r.logf("%s D trial %d: GET %s on %s: %.0f req/s, p50 %v, p99 %v, %d connections closed by the server",
			r.c.sys.label(), n, c.path, c.m.Name, res.rps, res.p50, res.p99, res.closed)
	}
	return nil
}

// E: the agents' idle footprint over opts.idle: RSS and CPU of each agent
// with its plugins (PostgreSQL excluded), and the requests etcd served.
func (r *runner) idle(ctx context.Context, n int) error {
	if _, err := r.c.waitHealthy(ctx, healthyTimeout); err != nil {
		return err
	}
	procs := make([][]int, len(r.c.members))
	cpu0 := make([]time.Duration, len(r.c.members))
	for i, m := range r.c.members {
		pid := m.agentPID()
		if pid == 0 {
			return fmt.Errorf("%s: no agent", m.Name)
		}
		procs[i] = agentProcesses(pid)
		for _, p := range procs[i] {
			if st, err := readStat(p); err == nil {
				cpu0[i] += st.cpu
			}
		}
	}
	before, err := r.c.etcd.requestCounts(ctx)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(r.opts.idle):
	}
	after, err := r.c.etcd.requestCounts(ctx)
	if err != nil {
		return err
	}
	var rssSum, anonSum int64
	var cpuSum time.Duration
	for i := range r.c.members {
		for _, p := range procs[i] {
			st, err := readStat(p)
			if err != nil {
				return fmt.Errorf("%s: process %d went away during the idle window", r.c.members[i].Name, p)
			}
			cpuSum += st.cpu
			rss, err := rssBytes(p)
			if err != nil {
				return err
			}
			rssSum += rss
			anon, err := anonBytes(p)
			if err != nil {
				return err
			}
			anonSum += anon
		}
		cpuSum -= cpu0[i]
	}
	members := float64(len(r.c.members))
	perMember := func(x float64) float64 { return x / members }
	delta, total := countDelta(before, after)
	r.res.add(mIdleRSS, perMember(float64(rssSum)/(1<<20)))
	r.res.add(mIdleAnon, perMember(float64(anonSum)/(1<<20)))
	r.res.add(mIdleCPU, perMember(cpuSum.Seconds()))
	r.res.add(mIdleDCS, perMember(total/r.opts.idle.Seconds()))
	r.logf("%s E trial %d: per member %.1f MiB RSS (%.1f MiB anonymous; %d processes in all), %.2f CPU s, %.2f etcd requests/s; cluster: %s",
		r.c.sys.label(), n, perMember(float64(rssSum)/(1<<20)), perMember(float64(anonSum)/(1<<20)), len(procs[0])+len(procs[1])+len(procs[2]),
		perMember(cpuSum.Seconds()), perMember(total/r.opts.idle.Seconds()), formatCounts(delta, r.opts.idle))
	return nil
}

func httpPost(ctx context.Context, url string, body []byte, timeout time.Duration) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(bytes.TrimSpace(reply)), nil
}

var errSkipped = errors.New("skipped")
